"""An OpenAPI document as a request checker, shared by the contract servers in this directory
(fly_server.py, kubernetes_server.py, docker_proxy.py), and the bits of plumbing they share.

Contract(path) reads an OpenAPI 3 or a Swagger 2.0 document (JSON, or YAML by the file name)
and checks a request against it: the path must match a path template and the method an
operation there; every query parameter must be declared, of its declared type (coerced from the
query string, then validated with the rest of its schema: enum, pattern, minimum...), given once
unless the document lets it repeat, and the required ones present; required header parameters
must be present; a body must be of a declared media type and validate against its schema.

Every object schema that lists `properties` is closed (`additionalProperties: false` unless it
says otherwise), so a misspelt or invented field fails; an `allOf` that combines several
property lists is merged into one closed object first (closing each part would refuse the
others' fields). OpenAPI 3's `nullable` and Swagger 2's `x-nullable` admit null. $refs resolve
into the document (#/components/schemas/..., #/definitions/...).

Backends adapt it by overriding the small hooks (query_parameter, repeat_allowed,
query_value_problems, path_parameter_pattern); see FlyContract and DockerContract.
"""

import copy
import datetime
import ipaddress
import json
import os
import re
import ssl
import sys
import urllib.parse
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SKIP = 77  # ctest's SKIP_RETURN_CODE: the contract is absent
HERE = os.path.dirname(os.path.abspath(__file__))
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# Schema keywords a Swagger 2.0 non-body parameter carries at its own level.
PARAMETER_SCHEMA_KEYS = ("type", "format", "items", "enum", "pattern", "minimum", "maximum", "exclusiveMinimum",
                         "exclusiveMaximum", "minLength", "maxLength", "minItems", "maxItems", "uniqueItems",
                         "multipleOf", "default", "x-nullable")
COLLECTION_SEPARATORS = {"csv": ",", "ssv": " ", "tsv": "\t", "pipes": "|"}


def default_contracts_dir():
    """$SYNTHORG_CONTRACTS_DIR, else ../shared/contracts beside the source tree."""
    return os.environ.get("SYNTHORG_CONTRACTS_DIR") or os.path.normpath(
        os.path.join(HERE, "..", "..", "..", "shared", "contracts"))


def load_document(path):
    with open(path, encoding="utf-8") as f:
        if not path.endswith((".yaml", ".yml")):
            return json.load(f)
        import yaml  # Debian's python3-yaml
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def write_ready_file(path, ready):
    """Writes the JSON ready file atomically: readers never see half a file."""
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(ready, f)
    os.replace(temporary, path)


# --------------------------------------------------------------------------- closing schemas

def resolve_pointer(document, ref):
    """The node a local $ref (#/a/b) names in `document`, or None."""
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return None
    node = document
    for part in ref[2:].split("/"):
        part = urllib.parse.unquote(part).replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def object_view(schema, document, stack=()):
    """The schema's own object form: $refs followed, allOf parts merged (see merge_all_of)."""
    if not isinstance(schema, dict):
        return {}
    ref = schema.get("$ref")
    if ref is not None:
        target = resolve_pointer(document, ref)
        return {} if target is None or ref in stack else object_view(target, document, stack + (ref,))
    if "allOf" in schema:
        return merge_all_of(schema, document, stack, force=True)
    return schema


def merge_all_of(schema, document, stack=(), force=False):
    """An allOf whose parts (and the schema itself) bring two or more property lists becomes one
    object schema listing them all, so that closing it refuses only what none of them lists.
    Anything else is returned as it is."""
    parts = [object_view(part, document, stack) for part in schema["allOf"]]
    own = {key: value for key, value in schema.items() if key != "allOf"}
    listing = [part for part in [own] + parts if "properties" in part]
    if len(listing) < 2 and not (force and listing):
        return schema
    merged = dict(own)
    merged.setdefault("type", "object")
    properties, required = {}, []
    for part in [own] + parts:
        for name, sub in part.get("properties", {}).items():
            if name in properties and properties[name] != sub:
                properties[name] = {"allOf": [properties[name], copy.deepcopy(sub)]}
            else:
                properties[name] = copy.deepcopy(sub)
        required += [name for name in part.get("required", []) if name not in required]
        extra = part.get("additionalProperties")
        if extra is not None and extra is not False and "additionalProperties" not in merged:
            merged["additionalProperties"] = copy.deepcopy(extra)
    merged["properties"] = properties
    if required:
        merged["required"] = required
    return merged


def close_schema(schema, document):
    """A copy of `schema` with object schemas closed and nullable turned into JSON Schema."""
    if not isinstance(schema, dict):
        return schema
    if isinstance(schema.get("allOf"), list):
        schema = merge_all_of(schema, document)
    out = {}
    for key, value in schema.items():
        if key in ("properties", "patternProperties", "definitions") and isinstance(value, dict):
            out[key] = {name: close_schema(sub, document) for name, sub in value.items()}
        elif key in ("allOf", "anyOf", "oneOf") and isinstance(value, list):
            out[key] = [close_schema(sub, document) for sub in value]
        elif key == "items" and isinstance(value, list):
            out[key] = [close_schema(sub, document) for sub in value]
        elif key in ("items", "additionalProperties", "additionalItems", "not") and isinstance(value, dict):
            out[key] = close_schema(value, document)
        else:
            out[key] = value  # data: enum, default, example, x-...
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    nullable = out.pop("nullable", None) is True
    nullable = (out.pop("x-nullable", None) is True) or nullable
    return admit_null(out) if nullable else out


def admit_null(schema):
    kind = schema.get("type")
    if "$ref" not in schema and isinstance(kind, str):
        schema["type"] = [kind, "null"]
        if "enum" in schema and None not in schema["enum"]:
            schema["enum"] = list(schema["enum"]) + [None]
        return schema
    return {"anyOf": [schema, {"type": "null"}]}


def close_document(node, document):
    """Closes every schema in an OpenAPI/Swagger document (a copy): the named ones
    (components/schemas, definitions) and each `schema` of a parameter, body or response."""
    if isinstance(node, list):
        return [close_document(value, document) for value in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "schema" and isinstance(value, dict):
            out[key] = close_schema(value, document)
        elif key in ("schemas", "definitions") and isinstance(value, dict):
            out[key] = {name: close_schema(sub, document) for name, sub in value.items()}
        elif key in ("example", "examples", "x-example"):
            out[key] = value
        else:
            out[key] = close_document(value, document)
    return out


# --------------------------------------------------------------------------- the contract

class Checked:
    """What check_request found: the operation (None when the path or method is not in the
    document), the path parameters, the parsed JSON body and the problems, each a sentence."""

    def __init__(self, method, path):
        self.method, self.path = method, path
        self.template = None
        self.operation = None
        self.parameters = {}  # (in, name) -> parameter object
        self.path_params = {}
        self.body = None
        self.problems = []

    @property
    def where(self):
        return f"{self.method} {self.template or self.path}"


class Contract:
    def __init__(self, path):
        import jsonschema  # Debian's python3-jsonschema

        warnings.simplefilter("ignore", DeprecationWarning)  # RefResolver, in newer releases
        self.jsonschema = jsonschema
        raw = load_document(path)
        self.swagger2 = str(raw.get("swagger", "")).startswith("2")
        self.document = close_document(raw, raw)
        self.schema_prefix = "#/definitions/" if self.swagger2 else "#/components/schemas/"
        # Refs resolve in this root: the closed named schemas (and parameters, bodies...).
        self.root = {key: self.document[key] for key in ("components", "definitions", "parameters", "responses")
                     if key in self.document}
        self.routes = []  # (regex, template, path parameter names, path item)
        for template, item in self.document.get("paths", {}).items():
            names = re.findall(r"\{([^}]+)\}", template)
            pattern, rest = "^", template
            for name in names:
                before, rest = rest.split("{" + name + "}", 1)
                pattern += re.escape(before) + "(" + self.path_parameter_pattern(template, name) + ")"
            self.routes.append((re.compile(pattern + re.escape(rest) + "$"), template, names, item))
        # Literal paths before templated ones (OpenAPI: /containers/json before /containers/{id}).
        self.routes.sort(key=lambda route: (len(route[2]), -len(re.sub(r"\{[^}]+\}", "", route[1]))))

    # -- hooks: override per backend ---------------------------------------------------------
    def path_parameter_pattern(self, template, name):
        """The regex a path parameter's value matches (one path segment)."""
        return "[^/]+"

    def query_parameter(self, declared, name):
        """(parameter object or None, problems) for a query parameter named `name`."""
        return declared.get(name), []

    def repeat_allowed(self, parameter):
        """May this query parameter be given more than once?"""
        kind = self.parameter_schema(parameter).get("type")
        if kind != "array":
            return False
        if self.swagger2:
            return parameter.get("collectionFormat") == "multi"
        return parameter.get("explode", parameter.get("style", "form") == "form")

    def query_value_problems(self, name, value, parameter):
        """Further problems with one query value that its schema cannot express."""
        return []

    # -- the document ------------------------------------------------------------------------
    def resolve(self, node):
        """A parameter, request body or response object, its $ref followed."""
        for _ in range(8):
            if not isinstance(node, dict) or "$ref" not in node:
                return node
            node = resolve_pointer(self.document, node["$ref"])
        return node

    def parameter_schema(self, parameter):
        if "schema" in parameter:
            return parameter["schema"]
        schema = {key: parameter[key] for key in PARAMETER_SCHEMA_KEYS if key in parameter}
        return close_schema(schema, {})  # x-nullable, if any

    def operation(self, method, path):
        """(template, path parameters, operation) for a path relative to the document's base;
        (template, None, None) when the path exists without that method; (None, None, None)."""
        found = None
        for regex, template, names, item in self.routes:
            match = regex.match(path)
            if not match:
                continue
            op = item.get(method.lower())
            if op is not None:
                values = dict(zip(names, (urllib.parse.unquote(g) for g in match.groups())))
                return template, values, op
            found = found or template
        return found, None, None

    def parameters_of(self, template, op):
        """The operation's parameters, with those of its path item, keyed by (in, name)."""
        item = next(route[3] for route in self.routes if route[1] == template)
        merged = {}
        for parameter in item.get("parameters", []) + op.get("parameters", []):
            parameter = self.resolve(parameter)
            merged[(parameter.get("in"), parameter.get("name"))] = parameter
        return merged

    def validate(self, schema, value):
        """Messages for each way `value` breaks `schema` (refs resolve into the document)."""
        resolver = self.jsonschema.RefResolver.from_schema(self.root)  # one a call: it is not thread-safe
        validator = self.jsonschema.Draft4Validator(schema, resolver=resolver)
        messages = []
        for error in sorted(validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path]):
            where = ".".join(str(p) for p in error.absolute_path) or "(root)"
            message = error.message
            if error.context:  # anyOf/oneOf: say what the closest alternative missed
                best = self.jsonschema.exceptions.best_match(error.context)
                message += f" (closest: {'.'.join(str(p) for p in best.absolute_path) or '(root)'}: {best.message})"
            messages.append(f"{where}: {message[:300]}")
        return messages

    def check_named(self, name, value):
        """Messages for each way `value` breaks the named schema (components/schemas, definitions)."""
        return self.validate({"$ref": self.schema_prefix + name}, value)

    # -- requests ----------------------------------------------------------------------------
    def check_request(self, method, path, query_pairs, content_type, body, headers=None):
        """Checks one request; `path` is relative to the document's base (basePath, server),
        `query_pairs` as urllib.parse.parse_qsl(keep_blank_values=True) gives them, `body` bytes
        or text, `headers` a case-insensitive mapping (or None: not checked)."""
        checked = Checked(method, path)
        template, path_params, op = self.operation(method, path)
        checked.template = template
        if template is None:
            checked.problems.append(f"no path {path} in the API document")
            return checked
        if op is None:
            checked.problems.append(f"{method} is not an operation of {template}")
            return checked
        checked.operation, checked.path_params = op, path_params
        checked.parameters = self.parameters_of(template, op)
        problems = checked.problems
        for (where, name), parameter in checked.parameters.items():
            if where == "path" and name in path_params:
                problems += self.check_value(f"path parameter {name}", path_params[name], parameter)
            if where == "header" and parameter.get("required") and headers is not None and headers.get(name) is None:
                problems.append(f"required header '{name}' is missing")
        problems += self.check_query(checked.parameters, query_pairs)
        problems += self.check_body(checked, op, content_type, body)
        return checked

    def check_value(self, label, text, parameter):
        schema = self.parameter_schema(parameter)
        typed, error = coerce(text, schema.get("type"))
        if error:
            return [f"{label}={text!r}: {error}"]
        return [f"{label}={text!r}: {message.removeprefix('(root): ')}" for message in self.validate(schema, typed)]

    def check_query(self, parameters, query_pairs):
        problems = []
        declared = {name: parameter for (where, name), parameter in parameters.items() if where == "query"}
        values = {}
        for name, value in query_pairs:
            parameter, found = self.query_parameter(declared, name)
            problems += found
            if parameter is None:
                problems.append(f"query parameter '{name}' is not declared for this operation "
                                f"(declared: {', '.join(sorted(declared)) or 'none'})")
                continue
            values.setdefault(name, (parameter, []))[1].append(value)
        for name, (parameter, given) in values.items():
            schema = self.parameter_schema(parameter)
            if len(given) > 1 and not self.repeat_allowed(parameter):
                problems.append(f"query parameter '{name}' is given {len(given)} times; the document declares one")
            if schema.get("type") == "array":
                problems += self.check_array(name, given, parameter, schema)
            else:
                for value in given:
                    problems += self.check_value(f"query parameter {name}", value, parameter)
            for value in given:
                problems += [f"query parameter {name}={value!r}: {p}"
                             for p in self.query_value_problems(name, value, parameter)]
        for name, parameter in declared.items():
            if parameter.get("required") and name not in values:
                problems.append(f"required query parameter '{name}' is missing")
        return problems

    def check_array(self, name, given, parameter, schema):
        if self.swagger2:
            separator = COLLECTION_SEPARATORS.get(parameter.get("collectionFormat", "csv"))
        else:
            separator = None if parameter.get("explode", parameter.get("style", "form") == "form") else ","
        items = [part for value in given for part in (value.split(separator) if separator else [value])]
        kind = (schema.get("items") or {}).get("type")
        typed = []
        for item in items:
            value, error = coerce(item, kind)
            if error:
                return [f"query parameter {name}={item!r}: {error}"]
            typed.append(value)
        return [f"query parameter {name}={','.join(given)!r}: {m.removeprefix('(root): ')}"
                for m in self.validate(schema, typed)]

    def declared_body(self, op):
        """(media type -> schema or None, required) of the operation's body; None: it has none."""
        if self.swagger2:
            body = next((p for p in map(self.resolve, op.get("parameters", [])) if p.get("in") == "body"), None)
            if body is None:
                return None, False
            kinds = op.get("consumes") or self.document.get("consumes") or ["application/json"]
            return {kind: body.get("schema") for kind in kinds}, bool(body.get("required"))
        body = self.resolve(op.get("requestBody"))
        if body is None:
            return None, False
        return ({kind: media.get("schema") for kind, media in (body.get("content") or {}).items()},
                bool(body.get("required")))

    def check_body(self, checked, op, content_type, body):
        media, required = self.declared_body(op)
        if media is None:
            return ["a body was sent, but the operation takes none"] if body else []
        if not body:
            return ["the operation requires a body, and none was sent"] if required else []
        kind = (content_type or "").split(";")[0].strip().lower()
        if not kind:
            return [f"a body was sent without a Content-Type (the operation takes {', '.join(media)})"]
        chosen = next((k for k in media if k.lower() == kind), None) or next(
            (k for k in media if fnmatch_media(k, kind)), None)
        if chosen is None:
            return [f"Content-Type is {content_type!r}; the operation takes {', '.join(media)}"]
        if not (kind == "application/json" or kind.endswith("+json")):
            return []  # not JSON: the document's schema cannot speak of it
        try:
            checked.body = json.loads(body)
        except ValueError as e:
            return [f"the body is not JSON: {e}"]
        schema = media[chosen]
        return [] if schema is None else [f"body {m}" for m in self.validate(schema, checked.body)]

    # -- answers (contract servers check their own) ------------------------------------------
    def check_response(self, method, path, status, value):
        template, _, op = self.operation(method, path)
        if not op:
            return []
        responses = op.get("responses", {})
        response = self.resolve(responses.get(str(status), responses.get(status)))
        if response is None:
            return []
        if self.swagger2:
            schema = response.get("schema")
        else:
            schema = (response.get("content") or {}).get("application/json", {}).get("schema")
        if schema is None or value is None:
            return []
        return [f"server answered {method} {template} {status} off-contract: {m}" for m in self.validate(schema, value)]


def fnmatch_media(declared, kind):
    declared = declared.lower()
    if declared == "*/*":
        return True
    if declared.endswith("/*"):
        return kind.startswith(declared[:-1])
    return False


def coerce(text, kind):
    """A query or path value as the type its schema declares: (value, None) or (None, why not)."""
    if isinstance(kind, list):  # a nullable type: the non-null one
        kind = next((k for k in kind if k != "null"), None)
    if kind == "integer":
        if re.fullmatch(r"-?[0-9]+", text):
            return int(text), None
        return None, "not an integer"
    if kind == "boolean":
        if text in ("true", "false"):
            return text == "true", None
        return None, "not a boolean (true or false)"
    if kind == "number":
        if re.fullmatch(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?", text):
            return float(text), None
        return None, "not a number"
    return text, None


# --------------------------------------------------------------------------- HTTP and TLS

class ContractServer(ThreadingHTTPServer):
    """A threading HTTP server that does each TLS handshake (when `tls` is an SSLContext) on
    the connection's own thread, so a slow or broken client cannot hold up accept()."""
    daemon_threads = True
    allow_reuse_address = True
    tls = None
    name = "contract server"

    def finish_request(self, request, client_address):
        if self.tls is not None:
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as e:
                if os.environ.get("CONTRACT_SERVER_VERBOSE"):
                    sys.stderr.write(f"{self.name}: TLS handshake with {client_address[0]} failed: {e}\n")
                return
        super().finish_request(request, client_address)


class ContractHandler(BaseHTTPRequestHandler):
    """HTTP/1.1, every method to handle_any(), quiet unless `verbose_env` is set."""
    protocol_version = "HTTP/1.1"
    verbose_env = "CONTRACT_SERVER_VERBOSE"
    json_content_type = "application/json"

    def send_json(self, status, value=None, headers=None):
        """An answer with `value` as its JSON body (None: no body) and any further headers."""
        body = b"" if value is None else json.dumps(value).encode()
        self.send_response(status)
        if value is not None:
            self.send_header("Content-Type", self.json_content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, header in (headers or {}).items():
            self.send_header(name, header)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        if os.environ.get(self.verbose_env) or os.environ.get("CONTRACT_SERVER_VERBOSE"):
            sys.stderr.write(f"{self.server_version}: " + (fmt % args) + "\n")

    def handle_any(self):
        raise NotImplementedError

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = lambda self: self.handle_any()


def make_certificates(directory, name="contract", files=("ca.pem", "server.pem", "server.key")):
    """A throwaway CA and a server certificate for 127.0.0.1 and localhost signed by it, written
    to `directory` under `files` (CA, certificate, key). Returns {"ca", "cert", "key"} paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=2)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = dict(zip(("ca", "cert", "key"), (os.path.join(directory, f) for f in files)))
    with open(paths["ca"], "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(paths["cert"], "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(paths["key"], "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return paths


def server_tls_context(paths):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(paths["cert"], paths["key"])
    return context
