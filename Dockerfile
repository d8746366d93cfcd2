# Serving image: Flask + gunicorn + onnxruntime from requirements/serving.txt only: no scikit-learn, no shap,
# no skl2onnx, no optbinning, no pandas, no training code. Models are trained elsewhere (`make train`) and
# mounted; nothing secret is in the image.
#
#   docker build -t credit-decision .
#   docker run -p 8000:8000 \
#     -v "$PWD/model_store:/srv/model_store:ro" \
#     -v "$PWD/secrets/api_keys:/run/secrets/api_keys:ro" \
#     -v credit-decision-data:/var/lib/credit-decision \
#     credit-decision
#
# Mounted: the model store, read-only; the key file of sha256 hashes, read-only; a volume for the SQLite
# decision records (one host only; for production set DATABASE_URL=postgresql://... instead).
# The key file holds `role:sha256hex:label` lines (`credit-decision keys create --role scorer --file FILE`);
# with CREDIT_DECISION_ENV=production the service refuses to start without it. TLS is terminated in front
# of the container (docs/SECURITY.md).
#
# Not built here: the development machines have no Docker daemon and cannot pull base images.
# tests/test_serving_install.py instead does what this file does, from this file: it copies the files the
# COPY lines name, runs the pip install lines in a fresh Python 3.11 virtualenv, checks that scikit-learn,
# shap and skl2onnx cannot be imported there, and runs CMD and HEALTHCHECK with ENV as a non-root user over
# a read-only model store, deciding one application end to end. Change them together.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# every serving package at its exact version, without resolving anything else; then the project alone
COPY requirements/serving.txt requirements/serving.txt
RUN pip install --no-deps -r requirements/serving.txt
COPY setup.cfg pyproject.toml README.md ./
COPY model_store/*.py model_store/
COPY service/ service/
COPY cli/ cli/
COPY training/__init__.py training/
RUN pip install --no-deps . && pip check

FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    MPLCONFIGDIR=/tmp/matplotlib \
    CREDIT_DECISION_ENV=production \
    CREDIT_DECISION_MODEL_STORE=/srv/model_store \
    CREDIT_DECISION_API_KEYS_FILE=/run/secrets/api_keys \
    DATABASE_URL=sqlite:////var/lib/credit-decision/decisions.sqlite3 \
    HOST=0.0.0.0 \
    PORT=8000 \
    WEB_CONCURRENCY=2
RUN groupadd --system app && useradd --system --gid app --home-dir /nonexistent --shell /usr/sbin/nologin app \
    && mkdir -p /srv/model_store /var/lib/credit-decision && chown app:app /var/lib/credit-decision \
    && chmod 0750 /var/lib/credit-decision
COPY --from=build /opt/venv /opt/venv
WORKDIR /var/lib/credit-decision
USER app
EXPOSE 8000
VOLUME ["/var/lib/credit-decision"]
# ready = the served model passed its self-check and the decision store is open (503 until then)
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['PORT'] + '/readyz', timeout=2)"]
# the production gunicorn config of the installed package (service/gunicorn_conf.py)
CMD ["gunicorn", "--config", "python:service.gunicorn_conf", "service.app:create_app()"]
