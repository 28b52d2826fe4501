"""The team dashboard: ``longcat-monitor dashboard`` (or ``streamlit run dashboard/app.py``).

This entry script checks access and the database, draws the shared filters in the sidebar and
hands over to the page chosen in the navigation (``dashboard/views/*.py``).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from monitor.dashboard import access, common
from monitor.queries import DatabaseState, database_status

RETRY_DATABASE_S = 15

st.set_page_config(
    page_title="LongCat usage monitor", page_icon=":material/monitoring:", layout="wide"
)

settings = common.settings_or_stop()
access.password_gate(settings)
engine = common.engine_for(settings.database_url)
status = database_status(engine)

if status.state is not DatabaseState.READY:
    if status.state is DatabaseState.EMPTY:
        common.show_getting_started(status)
    else:
        common.show_database_problem(status)

    @st.fragment(run_every=RETRY_DATABASE_S)
    def _wait_for_data() -> None:
        if database_status(engine).state is DatabaseState.READY:
            st.rerun(scope="app")

    _wait_for_data()
    st.stop()

common.sidebar_filters(settings, engine)
here = Path(__file__).parent / "views"
navigation = st.navigation(
    [
        st.Page(here / "today.py", title="Today", icon=":material/today:", default=True),
        st.Page(here / "history.py", title="Usage over time", icon=":material/bar_chart:"),
        st.Page(here / "costs.py", title="Costs", icon=":material/payments:"),
        st.Page(here / "errors.py", title="Errors", icon=":material/error:"),
        st.Page(here / "latency.py", title="Latency", icon=":material/speed:"),
        st.Page(here / "alerts.py", title="Alerts", icon=":material/mail:"),
        st.Page(here / "keys.py", title="Keys", icon=":material/key:"),
    ]
)
navigation.run()
