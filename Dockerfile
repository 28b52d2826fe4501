# longcat-monitor: one image for every service (scheduler, dashboard, gateway, migrate, simulate).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY monitor ./monitor
COPY dashboard ./dashboard
COPY migrations ./migrations
RUN pip install .[otel] \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin monitor \
    && rm -rf /src

# Unprivileged; the recorder's spool (gateway) lives in /home/monitor/.longcat-monitor.
USER monitor
WORKDIR /home/monitor

# dashboard, gateway, scheduler metrics, simulator
EXPOSE 8501 8787 9464 8900

ENTRYPOINT ["longcat-monitor"]
CMD ["--help"]
