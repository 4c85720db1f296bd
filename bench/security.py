"""S3's security policies, the same for both proxies: a RequestAuthentication (inline JWKS, an
RS256 key) and an ALLOW AuthorizationPolicy with 20 rules on `web`, attached by targetRefs as
Istio's waypoint docs show. The load carries a valid token (`header()`), sent by the client
identity `spiffe://cluster.local/ns/client/sa/load`; only the last rule matches it, so every
request evaluates all 20.

`waypoint_yaml()` is the Istio YAML the waypoint reads; `envoy_filters()` is what istiod
generates for an Envoy waypoint from that YAML (pilot/pkg/security/authn and authz): the
jwt_authn filter with one provider per rule (`origins-N`, required as `requires_any` of the
provider and `allow_missing`, so a request without a token passes authentication), the payload
in the filter's metadata under `payload`, and an RBAC filter whose policies are named
`ns[NS]-policy[NAME]-rule[N]`; a waypoint reads the peer identity from the filter state
`io.istio.peer_principal` that its connect_terminate listener sets from the client certificate.

The key was generated for the bench and its private half discarded: TOKEN (issuer ISSUER,
subject `load`, audience AUDIENCE, expiring in 2100) is the only token it ever signed.
"""

import json

NAMESPACE = "shop"
POLICY = "web-allow"
ISSUER = "https://auth.shop.example"
AUDIENCE = "web.shop.svc.cluster.local"
JWKS = '{"keys":[{"kty":"RSA","alg":"RS256","use":"sig","kid":"57oaRaOt_d9cMgNP8XIF6two_pFJEfzjD1Ti9qH90dY","n":"qfnSFUl5CJbCWzQsQuGuAARukX7Gm3ezkynRlnwqmJAweu_gxMXSkShl_eX_Ud1MCNgj72KNPEGCpdOjLY1kQlda31iT-7ZmYEB_4WkGjV6Bw4C-zQaMJy3fB-PyeE3MogCMZnt19dmWHaAQ-37nnDMXetCNfk3huyrpt2DLAofK-eJQcc8Oa0PKAvFoCu0wUWXmj7mQhRpO-51iGaCop6twqdQ-oOoej1l6tO5w2emAQ_GfVL167zmeArZxsFl3HbjLCeJ25it2FhE-K_tT1cUKi4G5_LMWcjfnn1CDeJh0Md4V8wDD8vOq46SuiWQNTg8FLmOQUPF6dgGownDUXQ","e":"AQAB"}]}'
TOKEN = (
    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6IjU3b2FSYU90X2Q5Y01nTlA4WElGNnR3b19wRkpFZnpqRD"
    "FUaTlxSDkwZFkifQ.eyJpc3MiOiJodHRwczovL2F1dGguc2hvcC5leGFtcGxlIiwic3ViIjoibG9hZCIsImF1ZCI6I"
    "ndlYi5zaG9wLnN2Yy5jbHVzdGVyLmxvY2FsIiwiaWF0IjoxNzY3MjI1NjAwLCJleHAiOjQxMDI0NDQ4MDB9.lWHS9O"
    "ZITbFT9xEnhvh53uh09Nuvx4ekp5DsezT-Y523K53nwfUdflwXnLwh5FrtmncYGFYVxhcV4ImA1apKa3ZSl-xcy3Ps"
    "L_OgZxXpbe9rm8s1fpPP6hHl9oTjqXqSc2DSIwNr32qJcC_AL5ab5EuOy-Njd5xNvO0aM82J_5YsX1wSY2vOtoctAw"
    "FOMI2vGzjiQzARfM5q7x6BsCX-jHKALiT9tntHNQxH0N0FNdI0JaxWrIgY7YbK2Wyx8CQT6OQJH4GV3sfEUMlm7mGJ"
    "qjhUaaZOvCS9npYncnsoq8mSGnixvAybsQKqGcgyDt_aO8IkQbjgix9zpBQMlYa1-Q"
)
CLIENT = "cluster.local/ns/client/sa/load"
PEER_PRINCIPAL_KEY = "io.istio.peer_principal"
JWT_FILTER = "envoy.filters.http.jwt_authn"


def header():
    """The Authorization header the load sends."""
    return f"Authorization: Bearer {TOKEN}"


def rules():
    """The ALLOW policy's 20 rules, Istio's `rules[]`: 19 that the load's request (GET /, from
    the client identity, with the token) never matches, in a mix of sources, operations and
    conditions, then the one it does."""
    out = []
    for k in range(19):
        kind = k % 5
        if kind == 0:
            out.append({"from": [{"source": {"principals": [f"cluster.local/ns/team-{k}/sa/api"]}}],
                        "to": [{"operation": {"methods": ["GET", "HEAD"], "paths": [f"/team-{k}/*"]}}]})
        elif kind == 1:
            out.append({"from": [{"source": {"namespaces": [f"tenant-{k}"]}}],
                        "to": [{"operation": {"methods": ["POST", "PUT"]}}]})
        elif kind == 2:
            out.append({"from": [{"source": {"requestPrincipals": [f"{ISSUER}/admin-{k}"]}}],
                        "to": [{"operation": {"paths": [f"/admin/{k}", "/admin/audit*"]}}]})
        elif kind == 3:
            out.append({"to": [{"operation": {"paths": [f"*.v{k}"], "methods": ["GET"]}}],
                        "when": [{"key": "request.headers[x-tenant]", "values": [f"tenant-{k}"]}]})
        else:
            out.append({"from": [{"source": {"principals": [CLIENT]}}],
                        "to": [{"operation": {"methods": ["DELETE"], "paths": [f"/orders/{k}"]}}]})
    out.append({"from": [{"source": {"principals": [CLIENT], "requestPrincipals": [f"{ISSUER}/load"]}}],
                "to": [{"operation": {"methods": ["GET", "HEAD"], "paths": ["/*"]}}],
                "when": [{"key": "request.auth.audiences", "values": [AUDIENCE]}]})
    return out


def _target():
    return [{"kind": "Service", "group": "", "name": "web"}]


def waypoint_yaml():
    """The RequestAuthentication and AuthorizationPolicy on `web` (JSON is YAML)."""
    authn = {"apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication",
             "metadata": {"name": "web-jwt", "namespace": NAMESPACE},
             "spec": {"targetRefs": _target(),
                      "jwtRules": [{"issuer": ISSUER, "audiences": [AUDIENCE], "jwks": JWKS}]}}
    authz = {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
             "metadata": {"name": POLICY, "namespace": NAMESPACE},
             "spec": {"targetRefs": _target(), "action": "ALLOW", "rules": rules()}}
    return "---\n" + json.dumps(authn) + "\n---\n" + json.dumps(authz) + "\n"


# --- Envoy: what istiod generates for the same YAML -------------------------------------------

def _exact(v):
    return {"exact": v}


def _path(v):
    """Istio's path value: `*` alone is any path, a leading `*` a suffix, a trailing one a
    prefix, anything else exact."""
    if v == "*":
        return {"safe_regex": {"regex": ".+"}}
    if v.startswith("*"):
        return {"suffix": v[1:]}
    if v.endswith("*"):
        return {"prefix": v[:-1]}
    return _exact(v)


def _or_rules(rules):
    return {"or_rules": {"rules": rules}}


def _or_ids(ids):
    return {"or_ids": {"ids": ids}}


def _peer(matcher):
    """The peer identity as a waypoint sees it: the filter state connect_terminate sets."""
    return {"filter_state": {"key": PEER_PRINCIPAL_KEY, "string_match": matcher}}


def _claim(claim, value):
    """A JWT claim in jwt_authn's metadata (`payload_in_metadata: payload`)."""
    return {"metadata": {"filter": JWT_FILTER, "path": [{"key": "payload"}, {"key": claim}],
                         "value": value}}


def _claim_list(claim, values):
    """A claim that may be a string or a list of strings, any of `values`."""
    one = lambda v: {"or_match": {"value_matchers": [  # noqa: E731
        {"string_match": _exact(v)}, {"list_match": {"one_of": {"string_match": _exact(v)}}}]}}
    return _or_ids([_claim(claim, one(v)) for v in values])


def _request_principal(value):
    iss, _, sub = value.rpartition("/")
    return {"and_ids": {"ids": [_claim("iss", {"string_match": _exact(iss)}),
                                _claim("sub", {"string_match": _exact(sub)})]}}


def _source_ids(source):
    ids = []
    if "principals" in source:
        ids.append(_or_ids([_peer(_exact(f"spiffe://{p}")) for p in source["principals"]]))
    if "namespaces" in source:
        ids.append(_or_ids([_peer({"safe_regex": {"regex": f".*/ns/{n}/.*"}})
                            for n in source["namespaces"]]))
    if "requestPrincipals" in source:
        # istiod ors several request principals, but leaves one as it is.
        rp = [_request_principal(v) for v in source["requestPrincipals"]]
        ids.append(rp[0] if len(rp) == 1 else _or_ids(rp))
    return ids


def _condition_ids(when):
    ids = []
    for c in when:
        key = c["key"]
        if key.startswith("request.headers["):
            name = key[len("request.headers["):-1]
            ids.append(_or_ids([{"header": {"name": name, "string_match": _exact(v)}} for v in c["values"]]))
        elif key == "request.auth.audiences":
            ids.append(_claim_list("aud", c["values"]))
        else:
            raise ValueError(f"bench/security.py translates no condition {key!r}")
    return ids


def _operation_rules(op):
    rules = []
    if "methods" in op:
        rules.append(_or_rules([{"header": {"name": ":method", "string_match": _exact(m)}} for m in op["methods"]]))
    if "paths" in op:
        rules.append(_or_rules([{"url_path": {"path": _path(p)}} for p in op["paths"]]))
    return rules


def _policy(rule):
    """One rule as istiod writes it: each `to` an and of its fields, each `from` an and of
    its fields and the rule's conditions; no `to` (or `from`) matches any request (source)."""
    tos = [_operation_rules(t["operation"]) for t in rule.get("to", [])]
    permissions = [{"and_rules": {"rules": r}} for r in tos] or [{"and_rules": {"rules": [{"any": True}]}}]
    conditions = _condition_ids(rule.get("when", []))
    froms = [_source_ids(f["source"]) + conditions for f in rule.get("from", [])] or [conditions]
    principals = [{"and_ids": {"ids": ids or [{"any": True}]}} for ids in froms]
    return {"permissions": permissions, "principals": principals}


def envoy_filters():
    """The HTTP filters istiod puts before the router of the waypoint's service chain."""
    provider = {
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "local_jwks": {"inline_string": JWKS},
        "payload_in_metadata": "payload",
        "normalize_payload_in_metadata": {"space_delimited_claims": ["scope", "permission"]},
    }
    jwt = {
        "providers": {"origins-0": provider},
        "rules": [{"match": {"prefix": "/"}, "requires": {"requires_any": {"requirements": [
            {"provider_name": "origins-0"}, {"allow_missing": {}}]}}}],
        "bypass_cors_preflight": True,
    }
    policies = {f"ns[{NAMESPACE}]-policy[{POLICY}]-rule[{i}]": _policy(r) for i, r in enumerate(rules())}
    return [
        {"name": JWT_FILTER, "typed_config": dict(
            {"@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"}, **jwt)},
        {"name": "envoy.filters.http.rbac", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": {"action": "ALLOW", "policies": policies},
            "shadow_rules_stat_prefix": "istio_dry_run_allow_"}},
    ]


def peer_principal_state():
    """connect_terminate's set_filter_state entry that carries the client certificate's SPIFFE
    ID into the internal connection, where the RBAC filter reads it."""
    return {"object_key": PEER_PRINCIPAL_KEY, "factory_key": "envoy.string",
            "format_string": {"text_format_source": {"inline_string": "%DOWNSTREAM_PEER_URI_SAN%"}},
            "shared_with_upstream": "ONCE"}
