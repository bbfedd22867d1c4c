# so_luigi with Luigi's scheduler extras: the image of the compose stack's luigid and worker.
FROM python:3.11-slim
WORKDIR /app
COPY setup.py README.md luigi.cfg ./
COPY so_luigi ./so_luigi
COPY config ./config
# sqlalchemy: luigid's task history database
RUN pip install --no-cache-dir . sqlalchemy
ENV PYTHONUNBUFFERED=1
CMD ["luigi", "--help"]
