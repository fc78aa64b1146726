"""absl flags for every `Config` field.

The flag names, defaults and help texts come from `config.Config`, so there is one place for
every user-facing name. absl rejects unknown flags, bad enum values and wrong types while
parsing; `Config.problems()` then checks values and contradictions (noise rate vs noise type,
paths, method vs known labels), and the CLI reports the first one as a single line naming the
flag, before TensorFlow is imported or any data is touched.
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


def define_field_flag(field: dataclasses.Field, default, help_text: str,
                      flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """One flag for a Config field: an enum where the field has choices, else by its type.
    scripts/reproduce.py defines its protocol overrides with it too (default None: unset)."""
    choices = field.metadata.get("choices")
    if choices:
        flags.DEFINE_enum(field.name, default, list(choices), help_text, flag_values=flag_values)
    else:
        _DEFINE_BY_TYPE[field.type](field.name, default, help_text, flag_values=flag_values)


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines one flag per Config field (enums for fields with choices)."""
    for field in dataclasses.fields(Config):
        define_field_flag(field, field.default, field.metadata["help"], flag_values)


def first_problem(config: Config) -> str | None:
    """`--flag: message` for the first problem of `config` (and how many more), or None."""
    problems = config.problems()
    if not problems:
        return None
    flag, message = problems[0]
    more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
    return f"--{flag}: {message}{more}"


def flag_names() -> list[str]:
    return [field.name for field in dataclasses.fields(Config)]


def config_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> Config:
    return Config(**{field.name: flag_values[field.name].value for field in dataclasses.fields(Config)})
