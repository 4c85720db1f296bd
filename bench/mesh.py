"""The waypoint's config folders for the benchmarks: the same services and routes that
bench/envoy/configs.py gives Envoy.

Service `web` (VIP 10.0.0.10:80) is the one the load is addressed to; its HTTPRoutes send it to
`web-backend`, whose EndpointSlice points at the nginx origin on loopback. `web-b` is a second
origin for the propagation scenario.
"""

import os

import security

NAMESPACE = "shop"
VIP = "10.0.0.10"
HOST = "web.shop.svc.cluster.local"

_MESH = """\
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {{istio.io/use-waypoint: waypoint}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: waypoint, namespace: shop}}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{{name: mesh, port: 15008, protocol: HBONE}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: shop}}
spec:
  clusterIP: 10.0.0.10
  ports: [{{name: http, port: 80}}]
{backends}"""

_BACKEND = """\
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: shop}}
spec:
  clusterIP: {vip}
  ports: [{{name: http, port: 80}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-1
  namespace: shop
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: http, port: {port}}}]
endpoints: [{{addresses: ["127.0.0.1"]}}]
"""


# S3's resilience: the catch-all retries a 503 twice (Gateway API `retry`, which istiod turns
# into retry_on retriable-status-codes), and web-backend has an outlier detector with Istio's
# documented defaults spelled out. bench/envoy/configs.py gives Envoy the same.
RETRY = "    retry: {attempts: 2, codes: [503]}\n"
OUTLIER_RULE = """\
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web-backend, namespace: shop}
spec:
  host: web-backend.shop.svc.cluster.local
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 5
      interval: 10s
      baseEjectionTime: 30s
      maxEjectionPercent: 10
"""


def _route(name, service, backend, header=None, retry=False):
    """One HTTPRoute with one rule on `service`; with `header`, the rule also requires
    x-variant: <header>, which ranks it above a rule without header matches (Gateway API
    precedence), so the catch-all is evaluated last. `retry` adds S3's retry policy."""
    matches = ""
    if header is not None:
        matches = (
            "    matches:\n"
            "    - path: {type: PathPrefix, value: /}\n"
            f"      headers: [{{name: x-variant, value: {header}}}]\n"
        )
    return (
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
        f"metadata: {{name: {name}, namespace: shop}}\n"
        "spec:\n"
        f"  parentRefs: [{{group: \"\", kind: Service, name: {service}, port: 80}}]\n"
        "  rules:\n"
        f"  - backendRefs: [{{name: {backend}, port: 80}}]\n"
        f"{matches}"
        f"{RETRY if retry else ''}"
    )


def web_routes(count, backend="web-backend", resilience=False):
    """`count` routes on `web`: count-1 header-matched variants the load never sends, then
    the catch-all (the only one that matches, last in precedence); with `resilience` the
    catch-all retries and web-backend gets an outlier detector."""
    out = [_route(f"web-variant-{k}", "web", backend, header=f"v{k}") for k in range(1, count)]
    out.append(_route("web", "web", backend, retry=resilience))
    if resilience:
        out.append(OUTLIER_RULE)
    return "".join(out)


def write_folder(path, backend_port, route_count=1, b_port=None, scale_services=0, routes_per_service=10,
                 resilience=False, secure=False):
    """Writes mesh.yaml and routes.yaml into `path`. `scale_services` more services (each with
    `routes_per_service` routes) make the route-scale configuration; `resilience` is S3's retry
    policy and outlier detector; `secure` writes security.yaml, S3's RequestAuthentication and
    20-rule ALLOW policy on `web` (bench/security.py)."""
    os.makedirs(path, exist_ok=True)
    backends = _BACKEND.format(name="web-backend", vip="10.0.0.11", port=backend_port)
    if b_port is not None:
        backends += _BACKEND.format(name="web-b", vip="10.0.0.12", port=b_port)
    with open(os.path.join(path, "mesh.yaml"), "w") as f:
        f.write(_MESH.format(backends=backends))
    with open(os.path.join(path, "routes.yaml"), "w") as f:
        f.write(web_routes(route_count, resilience=resilience))
    if secure:
        with open(os.path.join(path, "security.yaml"), "w") as f:
            f.write(security.waypoint_yaml())
    if scale_services:
        parts = []
        for i in range(scale_services):
            name = f"svc-{i:04d}"
            parts.append(
                "---\napiVersion: v1\nkind: Service\n"
                f"metadata: {{name: {name}, namespace: shop}}\n"
                f"spec:\n  clusterIP: {scale_vip(i)}\n  ports: [{{name: http, port: 80}}]\n"
            )
            for k in range(1, routes_per_service):
                parts.append(_route(f"{name}-variant-{k}", name, "web-backend", header=f"v{k}"))
            parts.append(_route(name, name, "web-backend"))
        with open(os.path.join(path, "scale.yaml"), "w") as f:
            f.write("".join(parts))


def scale_vip(i):
    """The VIP of route-scale service i: 10.1.0.1 onwards, 250 per /24."""
    return f"10.1.{i // 250}.{i % 250 + 1}"


def route_file_for(backend):
    """The routes.yaml of the propagation scenario: all of `web` to `backend`."""
    return _route("web", "web", backend)
