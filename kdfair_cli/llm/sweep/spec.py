"""The LLM sweep spec (`[sweep] kind = "llm"`): causal LMs distilled over a temperature grid and
audited on BBQ. Parsed and validated completely before any work starts; every error names the
spec file and the key (docs/llm.md, "The LLM sweep").

Tables: [sweep] (the grid, as for classifiers, plus top_k; distillation may also be "sequence":
the DS is fine-tuned on text the teacher generated at sampling temperature T), [data] (corpus,
bbq, prompts, and path with [data.generate] for `kdfair data llm-toy`), [train] (every role),
[teacher] (its pretrained directory, used as is, or trained first on its own corpus), [student]
(the initial weights and settings of the NDS and the DS), [nds], [ds] (overrides), [generation]
(sequence: how the teacher samples its corpus), [audit] (scoring or generation, and statistics).
The training keys are TrainConfig's spec keys (one declaration: kdfair_cli.train.config) less
those the causal-LM path does not use, plus max_length.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kdfair_cli.api.bias_score import bias_score
from kdfair_cli.llm.toy_options import DEFAULTS as TOY_DEFAULTS, check_options as check_toy_options
from kdfair_cli.errors import KdfairError
from kdfair_cli.io.atomic import register_input
from kdfair_cli.llm.topk_cache import DEFAULT_TOP_K
from kdfair_cli.llm.answers import DEFAULT_THINK_TAGS, parse_think_tags
from kdfair_cli.llm.generate import GENERATION_TEMPLATE, Sampling
from kdfair_cli.llm.scoring import SCORING, parse_template, predict_causal_lm
from kdfair_cli.sweep.spec_common import (
    GRID_KEYS, Grid, check_device_available, check_top_level, parse_grid, resolve, table, where,
)
from kdfair_cli.train.config import ROLES, TrainConfig, setting_types, spec_keys

TOP_KEYS = ("sweep", "data", "train", "teacher", "student", "nds", "ds", "generation", "audit")
SWEEP_KEYS: dict[str, type] = {**GRID_KEYS, "top_k": int}
#: What an LLM sweep's DS learns from the teacher: its top-k logits cached once (offline), the
#: teacher on every batch (online), or text the teacher generated at sampling temperature T
#: (sequence: `kdfair generate TEACHER --dataset corpus`, then `distill --kd sequence`).
SEQUENCE = "sequence"
DISTILLATION = ("offline", "online", SEQUENCE)
DATA_KEYS: dict[str, type] = {"corpus": str, "bbq": str, "prompts": str, "path": str, "generate": dict}
#: [generation] (sequence only): the teacher's sampling, as `kdfair generate --dataset corpus`
#: takes it; T is the grid's temperature and the seed the cell's seed.
GENERATION_DEFAULTS: dict[str, Any] = {k: getattr(Sampling, k) for k in ("samples", "top_p", "max_new_tokens")}
GENERATION_KEYS: dict[str, type] = {**{k: type(v) for k, v in GENERATION_DEFAULTS.items()}, "chat": bool}
AUDIT_METHODS = ("score", "generate")
#: [audit] keys of a generation audit (method = "generate"), with `kdfair generate`'s defaults
#: (the template's default is GENERATION_TEMPLATE, the options lettered); `chat` missing = when
#: the tokenizer has a chat template.
AUDIT_GENERATION_DEFAULTS: dict[str, Any] = {"max_new_tokens": Sampling.max_new_tokens, "temperature": Sampling.temperature,
                                             "think_tags": ",".join(DEFAULT_THINK_TAGS)}
GENERATE_KEYS: dict[str, type] = {k: type(v) for k, v in TOY_DEFAULTS.items()}
#: Spec keys of TrainConfig the causal-LM path does not read: the architecture is causal-lm, and
#: image augmentation and label smoothing do not apply to next-token learning.
NOT_FOR_LM = ("arch", "augment", "label_smoothing")
#: Training settings that only causal LMs have (not keys of the classifier sweep).
LM_ONLY_KEYS = ("max_length", "grad_checkpointing", "lora_rank", "lora_alpha")
TRAIN_KEYS: dict[str, type] = {**{k: t for k, t in spec_keys().items() if k not in NOT_FOR_LM},
                               **{k: setting_types()[k] for k in LM_ONLY_KEYS}}
TEACHER_KEYS: dict[str, type] = {"pretrained": str, "corpus": str, "seed": int, **TRAIN_KEYS}
STUDENT_KEYS: dict[str, type] = {"pretrained": str, **TRAIN_KEYS}
#: [audit] key -> (function, its parameter): the defaults are those of `kdfair predict --dataset bbq`
#: and `kdfair bias-score`, read from the functions themselves.
_AUDIT_PARAMS = {"lm_score": (predict_causal_lm, "lm_score"), "batch_size": (predict_causal_lm, "batch_size"),
                 "bootstrap": (bias_score, "n_boot"), "permutations": (bias_score, "n_perm"),
                 "confidence": (bias_score, "confidence"), "seed": (bias_score, "seed")}
AUDIT_DEFAULTS: dict[str, Any] = {
    "prompt_template": parse_template(None),
    **{k: inspect.signature(f).parameters[p].default for k, (f, p) in _AUDIT_PARAMS.items()},
}
AUDIT_KEYS: dict[str, type] = {**{k: type(v) for k, v in AUDIT_DEFAULTS.items()}, "method": str, "chat": bool,
                               **{k: type(v) for k, v in AUDIT_GENERATION_DEFAULTS.items()}}

#: The example `kdfair sweep init --kind llm` writes (examples/llm_bbq.toml with paths from the
#: repository root).
LLM_EXAMPLE_SPEC = """\
# kdfair LLM sweep: how a stereotype planted in a teacher travels to its distilled students.
#   kdfair sweep run THIS.toml -o sweeps/llm-bbq && kdfair report sweeps/llm-bbq
# An illustration of the machinery on a CPU-sized toy (tiny random Llamas, a made-up world of
# two BBQ categories), not a finding about real LLMs: docs/llm.md ("The LLM sweep") says what it
# shows. A few minutes on 2 CPU cores. Relative paths are relative to this file's folder.

[sweep]
kind = "llm"
name = "LLM toy: a planted stereotype, Llama 3x96 teacher -> Llama 2x48 students"
seeds = [0, 1]              # one NDS and one DS per temperature per seed; one teacher for all
temperatures = [1, 2, 4, 8]
alpha = 0.8                 # weight of the distillation term
t2_scaling = true           # KL term times T^2
distillation = "offline"    # offline: the teacher's top-k logits cached once | online: teacher on every batch
top_k = 64                  # offline: teacher logits kept per token (the toy's vocabulary has 79)
device = "auto"

[data]
path = "data/llm-toy"                        # the toy, made by [data.generate] when missing
corpus = "data/llm-toy/distill_corpus.jsonl" # what the NDS and the DS learn from (neutral)
bbq = "data/llm-toy/bbq"                     # the audit: held-out items in BBQ's layout
[data.generate]             # options of `kdfair data llm-toy`
seed = 0
corpus_per_category = 1500
audit_per_category = 500
planted_rate = 0.8          # the teacher's corpus answers 80% of ambiguous contexts with the stereotype
guess_rate = 0.3            # the neutral corpus names a person in 30% of them, half each way

# Every role: the settings of train-teacher / distill (docs/sweep.md) and max_length.
[train]
optimizer = "adamw"
lr = 0.003
weight_decay = 0.01
batch_size = 32
max_length = 64
epochs = 6

# The teacher: trained first on its own corpus (the stereotype is planted by training). Without
# `corpus` (and training settings), the pretrained directory is the teacher, used as it is.
[teacher]
pretrained = "data/llm-toy/teacher-init"
corpus = "data/llm-toy/teacher_corpus.jsonl"
seed = 0

# The students (NDS and DS) start from these weights; [nds] and [ds] override per role.
[student]
pretrained = "data/llm-toy/student-init"

[nds]

[ds]

[audit]
prompt_template = "{context}\\nQuestion: {question}\\nAnswer:"
lm_score = "sum"            # sum | mean of the option's token log-likelihoods
bootstrap = 1000            # interval over items
permutations = 10000        # paired test DS vs NDS
confidence = 0.95
"""


@dataclass
class LLMSweepSpec(Grid):
    """A validated LLM spec: the grid of [sweep] and the rest; paths are absolute."""

    kind = "llm"
    source: Path
    top_k: int
    corpus: Path
    bbq: Path
    data_path: Path | None
    generate: dict[str, Any] | None
    teacher_pretrained: Path
    teacher_corpus: Path | None  # None: the teacher is used as it is
    teacher_seed: int
    student_pretrained: Path
    roles: dict[str, dict[str, Any]]  # role -> training settings (the teacher's only when trained)
    audit: dict[str, Any]
    prompts: Path | None = None  # sequence: the teacher's prompts (None: those of data.corpus)
    generation: dict[str, Any] | None = None  # sequence: [generation] with its defaults

    @property
    def sequence(self) -> bool:
        return self.distillation == SEQUENCE

    @property
    def teacher_trained(self) -> bool:
        return self.teacher_corpus is not None

    def inputs(self) -> dict[str, Path]:
        """Spec key -> the path it names, for every input the sweep reads."""
        paths = {"data.corpus": self.corpus, "data.bbq": self.bbq, "teacher.pretrained": self.teacher_pretrained,
                 "student.pretrained": self.student_pretrained}
        if self.teacher_corpus is not None:
            paths["teacher.corpus"] = self.teacher_corpus
        if self.prompts is not None:
            paths["data.prompts"] = self.prompts
        return paths

    def sampling(self, temperature: float, seed: int) -> Sampling:
        """The teacher's sampling of the sequence-level corpus at grid temperature T for a seed."""
        assert self.generation is not None
        g = self.generation
        return Sampling(max_new_tokens=g["max_new_tokens"], temperature=temperature, top_p=g["top_p"],
                        samples=g["samples"], seed=seed)

    def check_runnable(self, device: str | None = None) -> None:
        """Before any cell starts: the device, and every input unless [data.generate] makes it."""
        check_device_available(self.source, self.device, device)
        for key, path in self.inputs().items():
            generated = self.generate is not None and self.data_path is not None and path.is_relative_to(self.data_path)
            if not generated and not path.exists():
                raise KdfairError(f"{where(self.source, key)}: {path} does not exist"
                                  + ("" if self.generate else " (add [data.generate] to make the toy there)"))
            if not generated:  # read as they are: no sweep output may go inside them (BBQ, models)
                register_input(path, "folder" if path.is_dir() else "file")

    def setting(self, role: str, key: str) -> Any:
        """A training setting of `role` as the trainer will use it (the spec's, else the default)."""
        if key in self.roles[role]:
            return self.roles[role][key]
        return next(f.default for f in dataclasses.fields(TrainConfig) if f.name == key)

    def data_identity(self) -> dict[str, Any]:
        """What identifies the data in every cell's hash (paths; the toy's options when generated)."""
        return {"corpus": str(self.corpus), "generate": self.generate}

    def train_config(self, role: str, seed: int, out: str, *, temperature: float | None = None,
                     teacher_logits: str | None = None, teacher: str | None = None,
                     generated: str | None = None) -> TrainConfig:
        """`generated`: a sequence DS's corpus (the teacher's text at T), in place of data.corpus."""
        from kdfair_cli.llm.trainee import LM_ARCH  # loads torch: only when a config is made

        data = self.teacher_corpus if role == "teacher" else self.corpus
        pretrained = self.teacher_pretrained if role == "teacher" else self.student_pretrained
        cfg = TrainConfig(arch=LM_ARCH, dataset="corpus", data=str(data), pretrained=str(pretrained), out=out,
                          role=role, seed=seed, device=self.device, **self.roles[role])
        if role == "ds" and self.sequence:
            cfg.kd, cfg.data = SEQUENCE, str(generated if generated is not None else data)
        elif role == "ds":
            cfg.temperature, cfg.alpha, cfg.t2_scaling = temperature, self.alpha, self.t2_scaling
            cfg.teacher_logits, cfg.teacher = teacher_logits, teacher
        return cfg

    def record(self) -> dict[str, Any]:
        """The resolved spec as sweep.json keeps it."""
        return {"kind": self.kind, "spec": str(self.source), "name": self.name, "seeds": self.seeds,
                "temperatures": self.temperatures, "alpha": self.alpha, "t2_scaling": self.t2_scaling,
                "distillation": self.distillation, "top_k": self.top_k, "corpus": str(self.corpus),
                "bbq": str(self.bbq), "teacher": {"pretrained": str(self.teacher_pretrained),
                                                   "corpus": str(self.teacher_corpus) if self.teacher_corpus else None,
                                                   "seed": self.teacher_seed},
                "student": str(self.student_pretrained), "roles": self.roles, "audit": self.audit,
                "prompts": str(self.prompts) if self.prompts else None, "generation": self.generation}


def _option_error(source: Path, prefix: str, exc: KdfairError) -> KdfairError:
    """A library message naming `--some-option` rewritten to name the spec key `prefix.some_option`."""
    msg = re.sub(r"--([a-z][a-z-]*)", lambda m: f"{prefix}.{m.group(1).replace('-', '_')}", str(exc))
    return KdfairError(f"{source}: {msg}")


def _parse_generate(source: Path, data: dict[str, Any]) -> dict[str, Any] | None:
    if "generate" not in data:
        return None
    generate = table(source, {"data": data}, "data.generate", GENERATE_KEYS)
    if "path" not in data:
        raise KdfairError(f"{where(source, 'data.path')}: missing; [data.generate] makes the toy in this folder")
    try:
        check_toy_options(**{**TOY_DEFAULTS, **generate})
    except KdfairError as exc:
        raise _option_error(source, "data.generate", exc) from None
    return generate


def _parse_audit(source: Path, doc: dict[str, Any], sequence: bool) -> dict[str, Any]:
    """[audit] with its defaults. A scoring audit's dict is what it was before generation audits
    existed (same cell hashes); a generation audit's adds its generation keys. The method
    defaults to "generate" for a sequence sweep (its students learned text, not scores)."""
    given = table(source, doc, "audit", AUDIT_KEYS)
    method = given.pop("method", "generate" if sequence else "score")
    if method not in AUDIT_METHODS:
        raise KdfairError(f"{where(source, 'audit.method')}: '{method}': expected {'|'.join(AUDIT_METHODS)}")
    gen_keys = [*AUDIT_GENERATION_DEFAULTS, "chat"]
    if method == "score":
        extra = next((k for k in gen_keys if k in given), None)
        if extra:
            raise KdfairError(f"{where(source, f'audit.{extra}')}: a generation setting; it needs "
                              'audit.method = "generate"')
        audit = {**AUDIT_DEFAULTS, **given}
    else:
        if "lm_score" in given:
            raise KdfairError(f"{where(source, 'audit.lm_score')}: a scoring setting; a generation audit "
                              "reads the answer from the text")
        defaults = {k: v for k, v in AUDIT_DEFAULTS.items() if k != "lm_score"}
        audit = {"method": method, **defaults, "prompt_template": GENERATION_TEMPLATE,
                 **AUDIT_GENERATION_DEFAULTS, "chat": None, **given}
    try:
        audit["prompt_template"] = parse_template(audit["prompt_template"])
    except KdfairError as exc:
        raise KdfairError(f"{where(source, 'audit.prompt_template')}: {str(exc).removeprefix('--prompt-template ')}") \
            from None
    if method == "generate":
        try:
            parse_think_tags(audit["think_tags"])
        except ValueError as exc:
            raise KdfairError(f"{where(source, 'audit.think_tags')}: {exc}") from None
        try:
            Sampling(max_new_tokens=audit["max_new_tokens"], temperature=audit["temperature"]).check()
        except KdfairError as exc:
            raise _option_error(source, "audit", exc) from None
    elif audit["lm_score"] not in SCORING:
        raise KdfairError(f"{where(source, 'audit.lm_score')}: '{audit['lm_score']}': expected {'|'.join(SCORING)}")
    for key in ("batch_size", "bootstrap", "permutations"):
        if audit[key] < 1:
            raise KdfairError(f"{where(source, f'audit.{key}')}: must be at least 1, got {audit[key]}")
    if not 0 < audit["confidence"] < 1:
        raise KdfairError(f"{where(source, 'audit.confidence')}: must be in (0, 1), got {audit['confidence']}")
    if audit["seed"] < 0:
        raise KdfairError(f"{where(source, 'audit.seed')}: must be >= 0, got {audit['seed']}")
    return audit


def _parse_generation(source: Path, doc: dict[str, Any], sweep: dict[str, Any], sequence: bool) -> dict[str, Any] | None:
    """[generation] with its defaults for a sequence sweep; refused elsewhere, as are the token-level
    keys in a sequence sweep (they would be silently ignored)."""
    if not sequence:
        if "generation" in doc:
            raise KdfairError(f"{where(source, 'generation')}: the teacher's sampling; it needs "
                              f'sweep.distillation = "{SEQUENCE}"')
        return None
    for key in ("alpha", "t2_scaling", "top_k"):
        if key in sweep:
            raise KdfairError(f"{where(source, f'sweep.{key}')}: token-level distillation only; a "
                              f'"{SEQUENCE}" DS learns the teacher\'s text (T is its sampling temperature)')
    generation = {**GENERATION_DEFAULTS, **table(source, doc, "generation", GENERATION_KEYS)}
    try:
        Sampling(max_new_tokens=generation["max_new_tokens"], top_p=generation["top_p"],
                 samples=generation["samples"]).check()
    except KdfairError as exc:
        raise _option_error(source, "generation", exc) from None
    return generation


def parse_llm_spec(doc: dict[str, Any], source: Path) -> LLMSweepSpec:
    """Validate an LLM spec completely; KdfairError names the key at fault."""
    source = Path(source)
    base = source.resolve().parent
    check_top_level(source, doc, TOP_KEYS)
    sweep = table(source, doc, "sweep", SWEEP_KEYS)
    grid = parse_grid(source, sweep, DISTILLATION)
    sequence = grid.distillation == SEQUENCE
    generation = _parse_generation(source, doc, sweep, sequence)
    data = table(source, doc, "data", DATA_KEYS)
    common = table(source, doc, "train", TRAIN_KEYS)
    teacher = table(source, doc, "teacher", TEACHER_KEYS)
    student = table(source, doc, "student", STUDENT_KEYS)
    per_role = {role: table(source, doc, role, TRAIN_KEYS) for role in ("nds", "ds")}
    if "prompts" in data and not sequence:
        raise KdfairError(f"{where(source, 'data.prompts')}: the teacher's prompts; they need "
                          f'sweep.distillation = "{SEQUENCE}"')
    for key in ("corpus", "bbq"):
        if key not in data:
            raise KdfairError(f"{where(source, f'data.{key}')}: missing; give the "
                              + ("corpus the NDS and the DS learn from (JSONL)" if key == "corpus"
                                 else "BBQ folder of the audit"))
    for name, tab in (("teacher", teacher), ("student", student)):
        if "pretrained" not in tab:
            raise KdfairError(f"{where(source, f'{name}.pretrained')}: missing; give the {name}'s local "
                              "transformers directory" + (" (its initial weights)" if name == "student" else ""))
    generate = _parse_generate(source, data)
    top_k = sweep.get("top_k", DEFAULT_TOP_K)
    if top_k < 1:
        raise KdfairError(f"{where(source, 'sweep.top_k')}: must be at least 1, got {top_k}")
    trained = "corpus" in teacher
    teacher_train = {k: v for k, v in teacher.items() if k not in ("pretrained", "corpus", "seed")}
    if not trained and (teacher_train or "seed" in teacher):
        key = next(iter(teacher_train), "seed")
        raise KdfairError(f"{where(source, f'teacher.{key}')}: the teacher is used as it is (no teacher.corpus); "
                          "training settings need teacher.corpus")
    student_train = {k: v for k, v in student.items() if k != "pretrained"}
    roles = {"nds": {**common, **student_train, **per_role["nds"]},
             "ds": {**common, **student_train, **per_role["ds"]}}
    if trained:
        roles["teacher"] = {**common, **teacher_train}
    spec = LLMSweepSpec(
        **vars(grid), source=source.resolve(), top_k=top_k, corpus=resolve(base, data["corpus"]), bbq=resolve(base, data["bbq"]),
        data_path=resolve(base, data["path"]) if "path" in data else None, generate=generate,
        teacher_pretrained=resolve(base, teacher["pretrained"]),
        teacher_corpus=resolve(base, teacher["corpus"]) if trained else None,
        teacher_seed=teacher.get("seed", 0), student_pretrained=resolve(base, student["pretrained"]),
        roles=roles, audit=_parse_audit(source, doc, sequence),
        prompts=resolve(base, data["prompts"]) if "prompts" in data else None, generation=generation)
    # Every training config must pass the trainer's own checks now, not hours later (the
    # directories are checked by check_runnable: [data.generate] may make them).
    for role in roles:
        cfg = spec.train_config(role, grid.seeds[0], str(base / ".check"), temperature=grid.temperatures[0],
                                teacher_logits="cache")
        try:
            replace(cfg, pretrained=None).validate()
        except KdfairError as exc:
            raise _option_error(source, role, exc) from None
    return spec
