# One image for every veo-batch service: the migration, the scheduler and the workers.
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY veobatch ./veobatch
RUN pip install --no-cache-dir . && useradd --create-home veo

USER veo
ENTRYPOINT ["veo-batch"]
CMD ["--help"]
