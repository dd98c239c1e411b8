"""The web-references panel of Analyze and History: cards from allowlisted sites, every field made safe."""

from __future__ import annotations

import streamlit as st

from medrag.analysis import Analysis
from medrag.ui.safe import escape_markdown, safe_url, shorten


def render_web(analysis: Analysis) -> None:
    """Reference cards from allowlisted sites; nothing when there are none (the stage log says why)."""
    if not analysis.web_results:
        return
    st.subheader("Web references")
    st.caption(escape_markdown(analysis.web_status))
    for result in analysis.web_results:
        with st.container(border=True):
            image = safe_url(result.image_url)
            if image:
                picture, text = st.columns([1, 5])
                picture.image(image, width="stretch")
            else:
                text = st.container()
            with text:
                st.markdown(f"**{escape_markdown(result.title or result.domain)}**")
                st.caption(escape_markdown(result.domain))
                st.text(shorten(result.snippet, 500))
                link = safe_url(result.url)
                if link:
                    st.link_button("Open source ↗", link)


__all__ = ["render_web"]
