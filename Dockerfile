# Meridio's one image, for users who have Docker. The project's own build needs no Docker or registry:
# scripts/build-image makes the same image offline (mmdebstrap + umoci). Every component runs from it:
#   meridio run nsp|ipam|lb|frontend|proxy|tapa, meridio operator
FROM debian:bookworm-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv gcc libc6-dev clang libbpf-dev linux-libc-dev \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md /src/
COPY src /src/src
# the Maglev helper and the LB's eBPF program (package data), as run.sh setup builds them
RUN cc -O2 -Wall -Werror -shared -fPIC -o /src/src/meridio/kernel/native/libmeridio_native.so \
       /src/src/meridio/kernel/native/maglev.c \
    && clang -O2 -g -Wall -Werror -target bpf -I/usr/include/x86_64-linux-gnu \
       -c /src/src/meridio/loadbalancer/bpf/fastpath.bpf.c -o /src/src/meridio/loadbalancer/bpf/fastpath.bpf.o \
    && python3 -m venv /opt/meridio/venv \
    && /opt/meridio/venv/bin/pip install --no-cache-dir /src

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 bird2 nftables iproute2 iptables iputils-ping procps \
       ca-certificates libbpf1 tini \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/meridio/venv /opt/meridio/venv
RUN ln -s /opt/meridio/venv/bin/meridio /usr/local/bin/meridio
ENV PYTHONDONTWRITEBYTECODE=1
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/meridio"]
