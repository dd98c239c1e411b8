"""``medrag sets list | show | export | import`` and ``medrag quiz results``: lesson sets and quiz results."""

from __future__ import annotations

import argparse
from pathlib import Path

from medrag.cli.common import Subparsers, workbench
from medrag.cli.output import clean, echo, lines


def _write(path: str, payload: bytes, data_dir: Path, force: bool) -> Path:
    from medrag.export import check_target
    from medrag.fsutil import atomic_write

    target = check_target(path, protected=[data_dir], force=force)
    atomic_write(target, payload)
    return target


def cmd_sets_list(args: argparse.Namespace) -> int:
    """One line a lesson set: name, number of cases, labels, last change."""
    from medrag.teaching.sets import sets_table

    table = sets_table(workbench(args).store)
    if table.empty:
        echo("No lesson sets yet: build one on the app's Lessons page.")
        return 0
    for row in table.to_dict("records"):
        missing = f", {int(row['missing'])} missing" if row["missing"] else ""
        name, labels = clean(row["set"]), clean(row["labels"])
        echo(f"{name:<40} {int(row['cases']):>4} cases{missing}  {labels:<30} {row['updated']}")
    return 0


def cmd_sets_show(args: argparse.Namespace) -> int:
    """The cases of one set in order, with their notes."""
    from medrag.teaching.sets import find_set, set_views

    store = workbench(args).store
    lesson = find_set(store, args.name)
    echo(f"{lesson.name}: {len(lesson.items)} cases")
    for item, view in set_views(store, lesson):
        echo(f"  {item.position:>3}. {view.title}  [{view.label or '?'}]")
        if item.note:
            echo(f"       note: {item.note}")
    return 0


def cmd_sets_export(args: argparse.Namespace) -> int:
    """Write a set as a zip (to import elsewhere) and/or a self-contained HTML handout."""
    from medrag.errors import InputError
    from medrag.teaching.bundle import export_bundle
    from medrag.teaching.handout import handout_for_set
    from medrag.teaching.sets import find_set

    if not (args.zip or args.html):
        raise InputError("Say what to write: --zip PATH (a set a colleague can import) and/or --html PATH (a handout).")
    wb = workbench(args)
    store = wb.store
    lesson = find_set(store, args.name)
    if args.zip:
        target = _write(args.zip, export_bundle(store, lesson), wb.settings.data_dir, args.force)
        echo(f"Wrote the lesson set {lesson.name} ({len(lesson.items)} cases) to {target}")
    if args.html:
        target = _write(args.html, handout_for_set(store, lesson).encode("utf-8"), wb.settings.data_dir, args.force)
        echo(f"Wrote the handout of {lesson.name} to {target}")
    return 0


def cmd_sets_import(args: argparse.Namespace) -> int:
    """Import a lesson-set zip: its images into the library, then the set."""
    from medrag.teaching.bundle import import_bundle

    imported = import_bundle(workbench(args), Path(args.zip).expanduser(), name=args.name)
    echo(imported.report.summary())
    echo(f"Imported the lesson set {imported.name} with {imported.cases} cases.")
    for note in imported.notes:
        echo(f"  note: {note}")
    return 0


def cmd_quiz_results(args: argparse.Namespace) -> int:
    """Per learner and quiz: answered, right, score; optionally written as CSV."""
    from medrag.teaching.results import answers_table, case_titles, results_csv, results_table

    wb = workbench(args)
    store = wb.store
    frame = store.quiz_answers_frame(quiz_name=args.set)
    table = answers_table(frame, case_titles(store, frame)) if args.answers else results_table(frame)
    if args.csv:
        target = _write(args.csv, results_csv(table), wb.settings.data_dir, args.force)
        echo(f"Wrote {len(table)} rows to {target}")
        return 0
    if table.empty:
        echo("No quiz answers yet" + (f" for {args.set!r}" if args.set else "") + ".")
        return 0
    lines(table.to_string(index=False))
    return 0


def add_parsers(sub: Subparsers) -> None:
    """Add ``sets`` and ``quiz`` to the ``medrag`` subcommands."""
    sets = sub.add_parser("sets", help="lesson sets: list, show, export (zip / HTML handout), import")
    actions = sets.add_subparsers(dest="sets_command", required=True)
    p = actions.add_parser("list", help="every lesson set")
    p.set_defaults(func=cmd_sets_list)
    p = actions.add_parser("show", help="the cases of one set, in order, with their notes")
    p.add_argument("name", help="the set's name (or #id)")
    p.set_defaults(func=cmd_sets_show)
    p = actions.add_parser("export", help="write a set as a zip a colleague can import, and/or an HTML handout")
    p.add_argument("name", help="the set's name (or #id)")
    p.add_argument("--zip", help="the zip to write")
    p.add_argument("--html", help="the handout to write (one self-contained HTML file)")
    p.add_argument("--force", action="store_true", help="replace files that exist")
    p.set_defaults(func=cmd_sets_export)
    p = actions.add_parser("import", help="import a lesson-set zip exported by MedRAG")
    p.add_argument("zip")
    p.add_argument("--name", help="the name to give the set (default: the name it was exported with)")
    p.set_defaults(func=cmd_sets_import)

    quiz = sub.add_parser("quiz", help="class quiz results")
    actions = quiz.add_subparsers(dest="quiz_command", required=True)
    p = actions.add_parser("results", help="scores per learner and quiz (or every answer with --answers)")
    p.add_argument("--set", help="only this quiz (a lesson set's name, or the source as the app names it)")
    p.add_argument("--answers", action="store_true", help="every answer instead of the scores")
    p.add_argument("--csv", help="write a CSV here instead of printing")
    p.add_argument("--force", action="store_true", help="replace the CSV if it exists")
    p.set_defaults(func=cmd_quiz_results)
