"""The Fly Machines OpenAPI document as a checker, for fly_server.py: the shared checker
(openapi_contract.py) with what is Fly's own: `metadata.{key}` query parameters, parameters
whose description lets them repeat, and the ErrorResponse every error answer carries."""

from openapi_contract import Contract


class FlyContract(Contract):
    def query_parameter(self, declared, name):
        # List's `metadata.{key}` stands for metadata.foo=bar, one parameter a key.
        if name not in declared and name.startswith("metadata.") and "metadata.{key}" in declared:
            problems = [] if len(name) > len("metadata.") else [f"query parameter '{name}' has no key after 'metadata.'"]
            return declared["metadata.{key}"], problems
        return declared.get(name), []

    def repeat_allowed(self, parameter):
        # Wait's `state` "supports repeated or comma-separated values" although it is a string.
        return super().repeat_allowed(parameter) or "repeated" in parameter.get("description", "")

    def check_error(self, value):
        return [f"server error body off-contract: {m}" for m in self.check_named("ErrorResponse", value)]
