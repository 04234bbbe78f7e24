"""Text towers of CLIP-like models run through ONNX Runtime: text into the image encoder's space.

A text manifest (task ``embed_text``) names its tokenizer (a ``tokenizer.json`` of the
``tokenizers`` library, next to the ONNX file), how ids are padded and truncated, and the
``encoder_id`` of the image encoder it pairs with: its vectors are searched in that encoder's
index.
"""

from __future__ import annotations

import string
from typing import TYPE_CHECKING

import numpy as np

from rap_edge.errors import InvalidInputError, ModelStoreError
from rap_edge.models._manifest import ModelManifest, load_manifest
from rap_edge.models._session import open_session
from rap_edge.models._store import sha256_file

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    import numpy.typing as npt
    from tokenizers import Tokenizer

    from rap_edge.runtime import Provider

__all__ = ["TextEncoder"]

_PUNCTUATION = str.maketrans("", "", string.punctuation)


class TextEncoder:
    """Embeds text queries with an exported text tower (task ``embed_text``).

    The manifest's ``extra`` holds: ``image_encoder_id`` (the paired image encoder),
    ``tokenizer`` and ``tokenizer_sha256`` (file next to the manifest), ``max_length``,
    ``pad_id``, ``attention_mask`` (whether the model takes one), and ``lowercase`` /
    ``strip_punctuation`` (text canonicalisation done outside the tokenizer, as SigLIP's).
    """

    def __init__(
        self,
        manifest: ModelManifest | str | Path,
        *,
        provider: Provider | str = "auto",
        batch_size: int = 32,
        check_hash: bool = True,
    ) -> None:
        """Load the text tower and its tokenizer.

        Args:
            manifest: A manifest or the path of its JSON file.
            provider: Execution provider (``auto``, ``tensorrt``, ``cuda``, ``cpu``).
            batch_size: Texts per inference call.
            check_hash: Verify the ONNX and tokenizer files against the manifest first.

        Raises:
            ModelStoreError: if a file is missing or damaged, or the manifest is incomplete.
        """
        m = manifest if isinstance(manifest, ModelManifest) else load_manifest(manifest)
        self.manifest = m
        if m.task != "embed_text":
            msg = f"{m.path}: task {m.task!r} is not a text encoder (embed_text)"
            raise ModelStoreError(msg)
        if not 1 <= batch_size <= 1024:  # noqa: PLR2004
            msg = f"batch_size must be in 1..1024, got {batch_size}"
            raise InvalidInputError(msg)
        self.batch_size = batch_size
        extra = m.extra
        try:
            self.image_encoder_id = str(extra["image_encoder_id"])
            self.max_length = int(extra["max_length"])
            pad_id = int(extra["pad_id"])
            tokenizer_name = str(extra["tokenizer"])
        except (KeyError, TypeError, ValueError) as err:
            msg = f"{m.path}: manifest field 'extra' lacks the text settings ({err})"
            raise ModelStoreError(msg) from err
        self._mask = bool(extra.get("attention_mask", False))
        self._lowercase = bool(extra.get("lowercase", False))
        self._strip_punctuation = bool(extra.get("strip_punctuation", False))
        path = m.onnx.parent / tokenizer_name
        if check_hash and path.is_file() and sha256_file(path) != extra.get("tokenizer_sha256"):
            msg = f"{path}: does not match the tokenizer SHA-256 in its manifest {m.path}"
            raise ModelStoreError(msg)
        self._tokenizer = _load_tokenizer(path, max_length=self.max_length, pad_id=pad_id)
        self._session, self.provider, _ = open_session(
            m, provider=provider, check_hash=check_hash, outputs=[m.output_name], check_dim=True
        )

    @property
    def encoder_id(self) -> str:
        """Id of the text tower (its vectors are searched in ``image_encoder_id``'s index)."""
        return self.manifest.encoder_id

    @property
    def dim(self) -> int:
        """Output vector length (the paired image encoder's)."""
        return self.manifest.dim

    def tokenize(
        self, texts: Sequence[str]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Token ids and attention mask, int64 [len(texts), max_length] each."""
        bad = [i for i, text in enumerate(texts) if not isinstance(text, str)]
        if bad:
            msg = f"text #{bad[0] + 1}: expected a string, got {type(texts[bad[0]]).__name__}"
            raise InvalidInputError(msg)
        prepared = [self._canonical(t) for t in texts]
        encodings = self._tokenizer.encode_batch(prepared)
        ids = np.array([e.ids for e in encodings], dtype=np.int64).reshape(len(texts), -1)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64).reshape(ids.shape)
        return ids, mask

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Embed texts; returns float32 [len(texts), dim], batched internally."""
        if not len(texts):
            return np.empty((0, self.dim), dtype=np.float32)
        chunks = []
        for start in range(0, len(texts), self.batch_size):
            chunks.append(
                self.embed_tokens(*self.tokenize(texts[start : start + self.batch_size]))
            )
        return np.concatenate(chunks)

    def embed_tokens(
        self, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        """Embed already tokenized texts (int64 [n, max_length] each); float32 [n, dim]."""
        if ids.ndim != 2 or ids.shape[1] != self.max_length or mask.shape != ids.shape:  # noqa: PLR2004
            msg = (
                f"token ids and mask must both be [n, {self.max_length}], got "
                f"{ids.shape} and {mask.shape}"
            )
            raise InvalidInputError(msg)
        feeds = {self.manifest.input_name: ids.astype(np.int64, copy=False)}
        if self._mask:
            feeds["attention_mask"] = mask.astype(np.int64, copy=False)
        (out,) = self._session.run([self.manifest.output_name], feeds)
        return np.asarray(out, dtype=np.float32).reshape(len(ids), -1)

    def _canonical(self, text: str) -> str:
        if self._lowercase:
            text = text.lower()
        if self._strip_punctuation:
            text = " ".join(text.translate(_PUNCTUATION).split())
        return text


def _load_tokenizer(path: Path, *, max_length: int, pad_id: int) -> Tokenizer:
    try:
        from tokenizers import Tokenizer
    except ImportError as err:
        msg = "text encoders need the `tokenizers` package (pip install tokenizers)"
        raise ModelStoreError(msg) from err
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises a bare Exception on any bad file
        msg = f"{path}: not a readable tokenizer.json ({err})"
        raise ModelStoreError(msg) from err
    pad_token = tokenizer.id_to_token(pad_id)
    if pad_token is None:
        msg = f"{path}: pad id {pad_id} from the manifest is not in the tokenizer's vocabulary"
        raise ModelStoreError(msg)
    tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding(length=max_length, pad_id=pad_id, pad_token=pad_token)
    return tokenizer
