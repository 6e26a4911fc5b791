# One image for every veo-batch service: the migration, the scheduler, the workers and the api.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1

# The user every service runs as, and the folders docker-compose.yml mounts its named volumes
# on: /videos (VEO_DOWNLOAD_DIR) and /data (VEO_DATA_DIR). A new named volume takes the
# ownership of the image's folder it is mounted on, so veo can write into both.
RUN useradd --create-home --uid 1000 veo \
    && mkdir -p /videos /data \
    && chown veo:veo /videos /data

WORKDIR /app
# The dependency versions CI tests: requirements/runtime.txt is requirements/ci.txt without
# the test tools (`make lock` writes both). Its own layer, rebuilt only when the lock changes.
COPY requirements/runtime.txt requirements/runtime.txt
RUN pip install --no-cache-dir -r requirements/runtime.txt

# Then veo-batch itself, with nothing more: every dependency is already pinned above.
COPY pyproject.toml README.md alembic.ini ./
COPY veobatch ./veobatch
RUN pip install --no-cache-dir --no-deps .

USER veo
ENTRYPOINT ["veo-batch"]
CMD ["--help"]
