# Meridio's one image, for users who have Docker. The project's own build needs no Docker or registry:
# scripts/build-image makes the same image offline (mmdebstrap + umoci). Every component runs from it:
#   meridio run nsp|ipam|lb|frontend|proxy|tapa, meridio operator
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv bird2 nftables iproute2 iptables \
       iputils-ping procps ca-certificates libbpf1 tini \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md /src/
COPY src /src/src
RUN python3 -m venv /opt/meridio/venv \
    && /opt/meridio/venv/bin/pip install --no-cache-dir /src \
    && rm -rf /src \
    && ln -s /opt/meridio/venv/bin/meridio /usr/local/bin/meridio
ENV PYTHONDONTWRITEBYTECODE=1
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/meridio"]
