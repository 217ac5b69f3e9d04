# Multi-stage build on Debian 12: the first stage builds the fully static kube-router with the
# same CMake options as CI; the runtime image adds only the tools the agent runs
# (iptables-restore, ipset), the ones an operator wants next to it (ipvsadm, conntrack, ip) and
# the CNI plugins the pod network uses, which the DaemonSet's init container installs on the node
# with cni/install-cni.sh (as upstream's image does).
#   docker build -t kube-router:latest .
FROM debian:12 AS build
WORKDIR /src
# Build dependencies only: the test tools (qemu, bird2, ...) are not needed to build.
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends build-essential cmake ninja-build pkg-config \
      nlohmann-json3-dev libyaml-cpp-dev libnl-3-dev libnl-genl-3-dev libnl-route-3-dev \
      libnl-nf-3-dev libcli11-dev libspdlog-dev libfmt-dev libssl-dev zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
# cpp-httplib from Debian trixie's source package, compiled by the build (scripts/fetch-httplib.sh).
COPY scripts/fetch-httplib.sh /tmp/fetch-httplib.sh
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends python3 xz-utils patch \
    && /tmp/fetch-httplib.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKR_STATIC=ON \
      -DKR_SPDLOG_COMPILED=ON -DKR_BUILD_TESTS=OFF \
    && cmake --build /build --target kube-router \
    && cp /build/kube-router /kube-router \
    && (ldd /kube-router 2>&1 | grep -q "not a dynamic executable")
# /build/kube-router is stripped by the build (KR_SPLIT_DEBUG): its debug info and symbols are in
# /build/kube-router.debug, which stays in this stage (gdb finds it through .gnu_debuglink).

FROM debian:12-slim
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends iptables ipset ipvsadm conntrack iproute2 kmod ca-certificates \
      containernetworking-plugins \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /kube-router /usr/local/bin/kube-router
COPY cni/10-kuberouter.conflist /etc/kube-router/cni-conf.json
COPY cni/install-cni.sh /usr/local/bin/install-cni
ENTRYPOINT ["/usr/local/bin/kube-router"]
