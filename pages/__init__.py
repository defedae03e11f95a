"""The dashboard's pages (routed by ``streamlit_app.py``) and their shared UI helpers (``pages.ui``)."""
