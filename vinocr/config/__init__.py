"""YAML configs: ``_base_`` inheritance, PaddleOCR-style ``-o`` overrides and schema validation."""
from vinocr.config.loader import (Config, apply_overrides, json_safe_config, load_config,
                                  parse_override, write_resolved_config)
from vinocr.config.schema import SCHEMA, Field, Section, register_section, validate_config

__all__ = ["Config", "apply_overrides", "json_safe_config", "load_config", "parse_override", "write_resolved_config",
           "SCHEMA", "Field", "Section", "register_section", "validate_config"]
