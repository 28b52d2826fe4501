"""The Streamlit team dashboard: ``longcat-monitor dashboard`` runs ``dashboard/app.py``."""
