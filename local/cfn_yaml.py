"""Load CloudFormation / SAM YAML templates with their short-form intrinsic tags.

``yaml.safe_load`` rejects ``!Ref``, ``!GetAtt``, ``!Sub`` and the other short forms CloudFormation accepts. This
loader maps each of them onto the long JSON form, the shape CloudFormation itself uses after parsing:

- ``!Ref Name`` -> ``{"Ref": "Name"}`` and ``!Condition Name`` -> ``{"Condition": "Name"}``
- ``!GetAtt Res.Attr`` -> ``{"Fn::GetAtt": ["Res", "Attr"]}`` (the list form is kept as written)
- any other ``!Tag value`` -> ``{"Fn::Tag": value}`` (``!Sub``, ``!If``, ``!Equals``, ``!Join``, ``!Select``...)

Timestamps are not converted to dates (CloudFormation has no date type): ``AWSTemplateFormatVersion: 2010-09-09``
stays the string ``"2010-09-09"``. Used by the template invariant tests and by the local runner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["CfnLoader", "load", "load_template"]


class CfnLoader(yaml.SafeLoader):
    """A ``yaml.SafeLoader`` that understands CloudFormation's short-form intrinsic function tags."""


# Own copy of the implicit resolvers, without the timestamp one (leaves SafeLoader itself untouched).
CfnLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_node(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    raise yaml.constructor.ConstructorError(None, None, f"unexpected node {type(node).__name__}", node.start_mark)


def _construct_intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    value = _construct_node(loader, node)
    if tag_suffix in ("Ref", "Condition"):
        return {tag_suffix: value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {f"Fn::{tag_suffix}": value}


CfnLoader.add_multi_constructor("!", _construct_intrinsic)


def load(text: str) -> dict[str, Any]:
    """Parse a CloudFormation/SAM template given as YAML text (JSON text works too)."""
    document = yaml.load(text, Loader=CfnLoader)  # CfnLoader is a SafeLoader: no arbitrary objects
    if not isinstance(document, dict):
        raise ValueError("a CloudFormation template must be a YAML mapping")
    return document


def load_template(path: str | Path) -> dict[str, Any]:
    """Read and parse the template at ``path``."""
    return load(Path(path).read_text(encoding="utf-8"))
