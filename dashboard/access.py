"""Who may see the dashboard: its password, tried at a pace that slows guessing down, and never a
dashboard open to other machines without one.

The back-off is kept per browser session and for all sessions together (a guesser can open a new
session for every try): the first few wrong passwords cost nothing, each one after doubles the
wait before the next is even checked, up to a minute; a quarter of an hour without a wrong one
forgets them.
"""

from __future__ import annotations

import hmac
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Final

import streamlit as st

from monitor.config import Settings, is_loopback

#: Wrong passwords one session may give before each next try has to wait.
SESSION_FREE_FAILURES: Final = 3
#: Wrong passwords all sessions together may give before each next try has to wait.
SHARED_FREE_FAILURES: Final = 10
FIRST_WAIT_S: Final = 2.0
MAX_WAIT_S: Final = 60.0
FORGET_AFTER_S: Final = 15 * 60.0
_BACKOFF_KEY: Final = "_sign_in_backoff"


@dataclass
class Backoff:
    """Wrong passwords, and how long the next try has to wait after them.

    >>> b = Backoff(free=1)
    >>> b.failed(now=0.0); b.wait_s(now=0.0)
    0.0
    >>> b.failed(now=0.0); b.wait_s(now=0.5)
    1.5
    """

    free: int
    failures: int = 0
    last_failure: float = -math.inf
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def wait_s(self, now: float) -> float:
        """Seconds until a try is checked again (0: now)."""
        with self._lock:
            over = self.failures - self.free
            if over < 0 or now - self.last_failure >= FORGET_AFTER_S:
                return 0.0
            wait = min(FIRST_WAIT_S * 2**over, MAX_WAIT_S)
            return max(self.last_failure + wait - now, 0.0)

    def failed(self, now: float) -> None:
        with self._lock:
            if now - self.last_failure >= FORGET_AFTER_S:
                self.failures = 0
            self.failures += 1
            self.last_failure = now

    def succeeded(self) -> None:
        with self._lock:
            self.failures = 0


@st.cache_resource(show_spinner=False)
def shared_backoff() -> Backoff:
    """The back-off all sessions of this server share."""
    return Backoff(free=SHARED_FREE_FAILURES)


def password_gate(settings: Settings) -> None:
    """Ask for ``MONITOR_DASHBOARD_PASSWORD`` when one is set; stop until it is given. Without
    one, stop if the server listens on an address other machines reach."""
    if settings.dashboard_password is None:
        address = st.get_option("server.address")
        if address and not is_loopback(str(address)):
            st.error(
                "This dashboard listens on an address other machines can reach and has no "
                "password: set MONITOR_DASHBOARD_PASSWORD, or serve it on 127.0.0.1."
            )
            st.stop()
        return
    if st.session_state.get("_authenticated"):
        return
    expected = settings.dashboard_password.get_secret_value().encode()
    session: Backoff = st.session_state.setdefault(_BACKOFF_KEY, Backoff(SESSION_FREE_FAILURES))
    shared = shared_backoff()
    st.title("LongCat usage monitor")
    with st.form("login"):
        given = st.text_input("Dashboard password", type="password")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        now = time.monotonic()
        wait = max(session.wait_s(now), shared.wait_s(now))
        if wait > 0:
            st.error(f"Too many wrong passwords: try again in {math.ceil(wait)} s.")
        elif hmac.compare_digest(given.encode(), expected):
            session.succeeded()
            shared.succeeded()
            st.session_state["_authenticated"] = True
            st.rerun()
        else:
            session.failed(now)
            shared.failed(now)
            st.error("That password is not right.")
    st.caption("The password is the server's MONITOR_DASHBOARD_PASSWORD.")
    st.stop()
