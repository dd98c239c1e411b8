"""Teaching with the library: lesson sets, presentation handouts, class quizzes, localisation and annotations.

No Streamlit here (the pages are in ``pages/6_Lessons.py`` and ``pages/7_Quiz.py``, their widgets in
``medrag/ui/``). One job per module:

- :mod:`~medrag.teaching.model`: the records (lesson sets and items, annotations, stored answers)
- :mod:`~medrag.teaching.items`: what a lesson item shows: its image, readable name, label and text
- :mod:`~medrag.teaching.sets`: building and editing lesson sets over the store
- :mod:`~medrag.teaching.bundle`: a set as a zip a colleague can import (manifest, images, notes, annotations)
- :mod:`~medrag.teaching.ziputil`: reading an untrusted zip with limits (bundles and browser uploads)
- :mod:`~medrag.teaching.handout`: a set as one self-contained HTML handout
- :mod:`~medrag.teaching.annotations`: educator boxes and arrows, NIH expert boxes, overlays drawn on images
- :mod:`~medrag.teaching.regions`: ground-truth regions and scoring a "where is it?" click
- :mod:`~medrag.teaching.leitner`: spaced repetition (Leitner boxes) for practice quizzes
- :mod:`~medrag.teaching.quiz`: quiz sources, questions and a learner's session (exam, practice, review)
- :mod:`~medrag.teaching.results`: scores per learner and quiz, every answer, as tables and CSV
"""

from __future__ import annotations

from medrag.teaching.model import Annotation, ItemRef, LessonItem, LessonSet, QuizAnswer

__all__ = ["Annotation", "ItemRef", "LessonItem", "LessonSet", "QuizAnswer"]
