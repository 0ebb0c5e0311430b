"""Content Credentials: key material, the manifest Hallmark signs, signing, and reading with a trust store."""

from guard.provenance.manifest import (
    HALLMARK_ASSERTION,
    IngredientSource,
    ManifestFacts,
    ReferenceImage,
    build_manifest,
    ingredients_for,
    payload_from_soft_binding_value,
    soft_binding_value,
)
from guard.provenance.reading import (
    C2PA_VIDEO_SUFFIXES,
    C2paReport,
    c2pa_mime_for_container,
    read_c2pa,
    trust_context,
    validate_manifest_bytes,
)
from guard.provenance.signing import callback_signer, file_signer, load_sign_callback, sign_video

__all__ = ["C2PA_VIDEO_SUFFIXES", "C2paReport", "HALLMARK_ASSERTION", "IngredientSource", "ManifestFacts",
           "ReferenceImage", "build_manifest", "c2pa_mime_for_container", "callback_signer", "file_signer",
           "ingredients_for", "load_sign_callback", "payload_from_soft_binding_value", "read_c2pa", "sign_video",
           "soft_binding_value", "trust_context", "validate_manifest_bytes"]
