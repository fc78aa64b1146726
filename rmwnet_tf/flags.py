"""absl flags for every `Config` field, checked at parse time.

The flag names, defaults and help texts come from `config.Config`, so there is one place for
every user-facing name. All checks run in one multi-flag validator: a bad value or a
contradiction stops the program during flag parsing with a one-line message naming the flag
(absl's "FATAL Flags parsing error: ..."), before TensorFlow is imported or data is touched.
"""

from __future__ import annotations

import dataclasses

from absl import flags

from rmwnet_tf.config import Config

_DEFINE_BY_TYPE = {
    "bool": flags.DEFINE_bool,
    "int": flags.DEFINE_integer,
    "float": flags.DEFINE_float,
    "str": flags.DEFINE_string,
}


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines one flag per Config field (enums for fields with choices) and the validator."""
    for field in dataclasses.fields(Config):
        help_text = field.metadata["help"]
        choices = field.metadata.get("choices")
        if choices:
            flags.DEFINE_enum(field.name, field.default, list(choices), help_text, flag_values=flag_values)
        else:
            _DEFINE_BY_TYPE[field.type](field.name, field.default, help_text, flag_values=flag_values)
    names = [field.name for field in dataclasses.fields(Config)]
    flags.register_multi_flags_validator(names, _check, flag_values=flag_values)


def _check(values: dict) -> bool:
    problems = Config(**values).problems()
    if problems:
        flag, message = problems[0]
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise flags.ValidationError(f"--{flag}: {message}{more}")
    return True


def config_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> Config:
    return Config(**{field.name: flag_values[field.name].value for field in dataclasses.fields(Config)})
