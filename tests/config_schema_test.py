#!/usr/bin/python3
"""An independent check of `synthorg config schema`: Debian's python3-jsonschema must accept
the document as a Draft 2020-12 schema, accept a correct configuration and reject wrong ones.
Usage: config_schema_test.py SYNTHORG_BINARY FIXTURE_DIR"""
import json
import os
import subprocess
import sys
import tempfile

import jsonschema

synthorg, fixtures = sys.argv[1], os.path.abspath(sys.argv[2])
with tempfile.TemporaryDirectory() as work:
    plugins = os.path.join(work, "plugins")
    os.mkdir(plugins)
    os.symlink(os.path.join(fixtures, "greeter.so"), os.path.join(plugins, "greeter.so"))
    config = os.path.join(work, "company.yaml")
    with open(config, "w") as f:
        f.write(f"company_name: T\nkernel:\n  plugin_dirs: [{plugins}]\n")
    schema = json.loads(subprocess.run([synthorg, "-c", config, "config", "schema"], check=True,
                                       capture_output=True, text=True).stdout)

assert "greeter" in schema["properties"]["plugins"]["properties"], schema["properties"]["plugins"]
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)

good = {"company_name": "Acme", "kernel": {"threads": 2, "shutdown_timeout": "1m30s"},
        "select": {"greeter": "greeter"},
        "plugins": {"greeter": {"enabled": True, "config": {"greeting": "Hi", "repeat": 3, "pause": "250ms"}},
                    "other": {"optional": True}}}
errors = list(validator.iter_errors(good))
assert not errors, [e.message for e in errors]

bad = [
    ({"kernel": {}}, "'company_name' is a required property"),
    ({"company_name": "A", "kernal": {}}, "Additional properties are not allowed"),
    ({"company_name": "A", "kernel": {"threads": "many"}}, "is not of type 'integer'"),
    ({"company_name": "A", "kernel": {"shutdown_timeout": "10"}}, "does not match"),
    ({"company_name": "A", "plugins": {"greeter": {"config": {"repeat": 99}}}}, "is greater than the maximum"),
    ({"company_name": "A", "plugins": {"greeter": {"config": {"greting": "x"}}}}, "Additional properties are not allowed"),
    ({"company_name": "A", "select": {"store": "Not A Name"}}, "does not match"),
    ({"company_name": "A", "plugins": {"greeter": {"config": {"greeting": "Hi 2 you"}}}}, "does not match"),
]
for document, expected in bad:
    messages = [e.message for e in validator.iter_errors(document)]
    assert any(expected in m for m in messages), (document, messages)
print(f"config schema: valid Draft 2020-12; 1 good and {len(bad)} bad documents judged as expected")
