"""The dashboard's pages (routed by ``streamlit_app.py``) and their shared UI helpers (``pages.ui``).

Every page script starts with ``import pages``. Importing this package (once per process):

1. puts ``lambda_src`` on ``sys.path`` (via ``pipeline``), so ``imagepipe.*`` imports work even
   when a page runs before the router did;
2. leaves Streamlit's legacy "pages/ directory" mode. Streamlit decides per process, before any
   script runs, to treat a ``pages/`` folder next to the entry point as v1 multipage pages, and
   only drops that when ``st.navigation`` is first called. If the very first request of a
   server process is a deep link (``/history`` after a restart), Streamlit would run that page
   alone with an auto-generated sidebar. We switch the mode off and rerun, so the router
   (``streamlit_app.py``) runs and shows the requested page.
"""

import pipeline  # noqa: F401  (puts lambda_src on sys.path for ``imagepipe.*`` imports)


def _leave_legacy_pages_mode() -> None:
    """Rerun through the router if Streamlit started this run in v1 ``pages/`` mode."""
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    if PagesManager.uses_pages_directory and get_script_run_ctx() is not None:
        import streamlit as st

        PagesManager.uses_pages_directory = False
        st.rerun()


_leave_legacy_pages_mode()
