# Serving image: Flask + gunicorn + onnxruntime; no scikit-learn, no shap, no training code needed.
# Build context: the repository root. Mount a model store at /srv/model_store (trained with `make train`),
# a key file of hashes at /var/lib/credit-decision/api_keys (`credit-decision keys create`), and set
# DATABASE_URL=postgresql://... for production records (the SQLite default suits one host only).
FROM python:3.11-slim AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    CREDIT_DECISION_ENV=production \
    CREDIT_DECISION_MODEL_STORE=/srv/model_store \
    CREDIT_DECISION_API_KEYS_FILE=/var/lib/credit-decision/api_keys \
    DATABASE_URL=sqlite:////var/lib/credit-decision/decisions.sqlite3 \
    HOST=0.0.0.0 \
    PORT=8000

WORKDIR /app
RUN groupadd --system app && useradd --system --gid app --home /app app

COPY setup.cfg pyproject.toml README.md ./
COPY requirements/ requirements/
COPY model_store/*.py model_store/
COPY service/ service/
COPY training/__init__.py training/
COPY cli/ cli/
RUN pip install -c requirements/constraints.txt . && mkdir -p /srv/model_store /var/lib/credit-decision \
    && chown app:app /var/lib/credit-decision

USER app
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=2s --retries=3 \
    CMD python -c "import os,urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/healthz', timeout=2)"
CMD ["credit-decision", "serve"]
