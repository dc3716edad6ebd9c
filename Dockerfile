# The image of the Docker work pool's deployments (prefect.yaml: nightly-synthetic-docker, ptbxl-gpt4o-docker).
#   docker build -t ecg-grounding:latest .  &&  export ECG_GROUNDING_IMAGE=ecg-grounding:latest
# It holds the project's dependencies; each flow run's pull step clones the repository and runs that code.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/ecg-grounding
COPY pyproject.toml README.md ./
COPY pipeline pipeline
COPY features features
COPY flows flows
COPY gem_model gem_model
COPY prompts prompts
COPY knowledge knowledge
RUN pip install --no-cache-dir .
