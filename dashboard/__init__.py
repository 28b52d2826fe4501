"""The Streamlit team dashboard: ``longcat-monitor dashboard`` runs ``dashboard/app.py``."""

from pathlib import Path

APP_PATH = Path(__file__).with_name("app.py")
