"""Settings: paths, backends, retrieval and web options.

One frozen dataclass, built from defaults < environment < ``.streamlit/secrets.toml``
(keys only) < explicit overrides. Nothing here touches the network or imports heavy libraries.
This is the only module that reads the environment: the ``default_*`` functions below are the readers, and
code holding no Settings (``select_device()`` without a device) asks them rather than ``os.environ``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from medrag.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The variable that names the ``openclip`` encoder's model (quoted in that encoder's messages).
OPENCLIP_MODEL_ENV = "MEDRAG_OPENCLIP_MODEL"

DEFAULT_ALLOWLIST: tuple[str, ...] = (
    "radiopaedia.org",
    "nih.gov",
    "ncbi.nlm.nih.gov",
    "medlineplus.gov",
    "rsna.org",
    "radiologyinfo.org",
    "cdc.gov",
    "who.int",
    "merckmanuals.com",
    "mayoclinic.org",
)


def default_data_dir() -> Path:
    """The data folder: ``$MEDRAG_DATA_DIR`` or ``data/`` beside the package."""
    env = os.environ.get("MEDRAG_DATA_DIR")
    return Path(env).expanduser().resolve() if env else REPO_ROOT / "data"


def default_hf_cache_dir() -> Path:
    """The Hugging Face hub cache: ``$HF_HUB_CACHE`` (or ``$HUGGINGFACE_HUB_CACHE``), ``$HF_HOME/hub``, else
    ``~/.cache/huggingface/hub`` (the order huggingface_hub itself uses)."""
    env = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if env:
        return Path(env).expanduser()
    home = os.environ.get("HF_HOME")
    if home:
        return Path(home).expanduser() / "hub"
    return Path("~/.cache/huggingface/hub").expanduser()


def default_xrv_cache_dir() -> Path:
    """torchxrayvision's weights folder: ``$MEDRAG_XRV_CACHE`` or ``~/.torchxrayvision/models_data``."""
    env = os.environ.get("MEDRAG_XRV_CACHE")
    return Path(env).expanduser() if env else Path("~/.torchxrayvision/models_data").expanduser()


def default_device() -> str:
    """The device ``$MEDRAG_DEVICE`` asks for, or ``"auto"`` (validated by Settings and select_device)."""
    return (os.environ.get("MEDRAG_DEVICE") or "auto").strip() or "auto"


def default_openclip_model() -> str:
    """The ``openclip`` encoder's model reference from ``$MEDRAG_OPENCLIP_MODEL`` ("" when unset)."""
    return os.environ.get(OPENCLIP_MODEL_ENV, "").strip()


@dataclass(frozen=True)
class Settings:
    """Everything a MedRAG run can be configured with."""

    data_dir: Path = field(default_factory=default_data_dir)
    image_encoder: str = "classic"
    text_encoder: str = "minilm"
    reasoner: str = "evidence"
    summariser: str = "rules"
    k: int = 5
    web_provider: str = "auto"  # auto | serpapi | tavily | off
    web_max_results: int = 5
    allowlist: tuple[str, ...] = DEFAULT_ALLOWLIST
    serpapi_api_key: str | None = field(default=None, repr=False)
    tavily_api_key: str | None = field(default=None, repr=False)
    serpapi_base_url: str | None = None
    tavily_base_url: str | None = None
    # model backends (issue 4); ids or local directories
    hf_reasoner_model: str = "Manusinhh/medgemma-finetuned-cxr-reasoning"
    hf_summariser_model: str = "Manusinhh/medgemma-finetuned-cxr-summerizer"
    hf_base_model: str = "google/medgemma-4b-it"
    openai_base_url: str | None = None
    openai_model: str = "medgemma"
    openai_api_key: str | None = field(default=None, repr=False)
    #: seconds to wait for each piece of a shared inference server's answer (MEDRAG_OPENAI_TIMEOUT)
    openai_timeout: float = 120.0
    #: seconds to wait for the connection (MEDRAG_OPENAI_CONNECT_TIMEOUT)
    openai_connect_timeout: float = 5.0
    #: requests this process sends the server at once; more wait for a slot (MEDRAG_OPENAI_MAX_CONCURRENT)
    openai_max_concurrent: int = 4
    #: the share of a GPU each Ray import worker asks for (MEDRAG_RAY_GPUS, ``--ray-gpus``): Ray then places
    #: the workers, and their torch encoders and readers, on the cluster's GPU machines; 0 = CPUs only
    ray_gpus: float = 0.0
    max_new_tokens: int = 512
    temperature: float = 0.2
    load_in_4bit: bool = False
    #: where torch models run: auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps
    device: str = "auto"
    #: the ``openclip`` encoder's model: local-dir:PATH or hf-hub:ORG/REPO (from the local HF cache)
    openclip_model: str = ""
    #: the Hugging Face hub cache MedRAG looks in and ``medrag models pull`` fills (HF_HUB_CACHE, HF_HOME)
    hf_cache_dir: Path = field(default_factory=default_hf_cache_dir)
    #: torchxrayvision's weights folder (MEDRAG_XRV_CACHE)
    xrv_cache_dir: Path = field(default_factory=default_xrv_cache_dir)
    #: the image readers the findings stage runs, in order (MEDRAG_READERS, comma-separated; "" = none)
    readers: tuple[str, ...] = ("anatomy", "medrag-cnn")
    demo_cases: int = 240
    save_history: bool = True
    #: a shared PostgreSQL store (MEDRAG_DATABASE_URL, postgresql://…); None = the data folder's DuckDB file
    database_url: str | None = field(default=None, repr=False)
    #: the educator's password hash for a class (MEDRAG_EDUCATOR_PASSWORD_HASH, from ``medrag auth
    #: hash-password``); None = a workstation, login-free, where everyone is the educator
    educator_password_hash: str | None = field(default=None, repr=False)
    #: who is the educator when people sign in with st.login (an OIDC provider in secrets.toml's ``[auth]``):
    #: their e-mail addresses (MEDRAG_EDUCATOR_EMAILS, comma-separated); everyone else signed in is a learner
    educator_emails: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.k <= 100:
            raise ConfigError(f"k must be between 1 and 100, got {self.k}; pass a value such as --k 5.")
        if self.demo_cases < 1:
            raise ConfigError(
                f"demo_cases must be at least 1, got {self.demo_cases}; MEDRAG_DEMO_CASES=240 is the default size."
            )
        if self.web_provider not in {"auto", "serpapi", "tavily", "off"}:
            raise ConfigError(
                f"web_provider {self.web_provider!r} is unknown; use auto, serpapi, tavily or off."
            )
        for name, variable in (("openai_timeout", "MEDRAG_OPENAI_TIMEOUT"),
                               ("openai_connect_timeout", "MEDRAG_OPENAI_CONNECT_TIMEOUT")):
            value = float(getattr(self, name))
            if not 0 < value <= 3600:
                raise ConfigError(f"{name} must be between 0 and 3600 seconds, got {value:g}; set {variable}.")
        if not 0 <= float(self.ray_gpus) <= 8:
            raise ConfigError(f"ray_gpus must be between 0 and 8 GPUs per worker, got {self.ray_gpus}; set "
                              "MEDRAG_RAY_GPUS / --ray-gpus to a share such as 0.25 (four workers per GPU), or 0.")
        if not 1 <= self.openai_max_concurrent <= 256:
            raise ConfigError(f"openai_max_concurrent must be between 1 and 256, got {self.openai_max_concurrent}; "
                              "set MEDRAG_OPENAI_MAX_CONCURRENT (4 suits one vLLM server for a class).")
        device = self.device.strip().lower()
        kind, _, number = device.partition(":")
        if kind not in {"auto", "cpu", "cuda", "mps"} or (number and (kind != "cuda" or not number.isdigit())):
            raise ConfigError(f"device {self.device!r} is unknown; use auto, cpu, cuda, cuda:1 or mps (MEDRAG_DEVICE).")
        object.__setattr__(self, "device", device)
        url = (self.database_url or "").strip() or None
        if url is not None and not url.lower().startswith(("postgresql://", "postgres://")):
            raise ConfigError(
                f"database_url must be a PostgreSQL URL such as postgresql://USER:PASSWORD@HOST:5432/medrag, got one "
                f"starting {url.split('://', 1)[0][:20]!r}; fix MEDRAG_DATABASE_URL / --database-url or unset it for "
                "the data folder's own database."
            )
        object.__setattr__(self, "database_url", url)
        educator = (self.educator_password_hash or "").strip() or None
        if educator is not None:
            from medrag.roles import check_hash

            educator = check_hash(educator)
        object.__setattr__(self, "educator_password_hash", educator)
        emails = tuple(dict.fromkeys(e.strip().lower() for e in self.educator_emails if e and e.strip()))
        malformed = [e for e in emails if e.count("@") != 1 or e.startswith("@") or e.endswith("@")]
        if malformed:
            raise ConfigError(f"MEDRAG_EDUCATOR_EMAILS holds {malformed[0]!r}, which is not an e-mail address; list "
                              "the educators' addresses separated by commas (teacher@school.example,...).")
        object.__setattr__(self, "educator_emails", emails)
        object.__setattr__(self, "readers", tuple(r.strip() for r in self.readers if r and r.strip()))
        object.__setattr__(self, "openclip_model", self.openclip_model.strip())
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser().resolve())
        object.__setattr__(self, "hf_cache_dir", Path(self.hf_cache_dir).expanduser())
        object.__setattr__(self, "xrv_cache_dir", Path(self.xrv_cache_dir).expanduser())

    @property
    def torch_device(self) -> str | None:
        """The device to ask for, or None to let :func:`medrag.devices.select_device` choose."""
        return None if self.device == "auto" else self.device

    # Derived paths: one data folder holds everything, so it moves as one.
    @property
    def db_path(self) -> Path:
        """The DuckDB file."""
        return self.data_dir / "medrag.duckdb"

    @property
    def thumbs_dir(self) -> Path:
        """Content-addressed thumbnails."""
        return self.data_dir / "thumbs"

    @property
    def uploads_dir(self) -> Path:
        """Content-addressed copies of uploaded files."""
        return self.data_dir / "uploads"

    @property
    def index_dir(self) -> Path:
        """FAISS indexes, one per encoder."""
        return self.data_dir / "index"

    @property
    def demo_dir(self) -> Path:
        """Where the synthetic demo library's images and labels.csv are written."""
        return self.data_dir / "demo"

    @property
    def models_dir(self) -> Path:
        """Fitted state of weight-free models (the classic encoder's library mean) and imported weights
        (``hf/<name>``)."""
        return self.data_dir / "models"

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields changed (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def _read_secrets(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix it or delete it.") from exc


#: Numeric environment variables: (variable, setting, type, what the error says it must be).
_NUMERIC_VARIABLES: tuple[tuple[str, str, type, str], ...] = (
    ("MEDRAG_K", "k", int, "an integer"),
    ("MEDRAG_DEMO_CASES", "demo_cases", int, "an integer"),
    ("MEDRAG_OPENAI_MAX_CONCURRENT", "openai_max_concurrent", int, "an integer"),
    ("MEDRAG_OPENAI_TIMEOUT", "openai_timeout", float, "a number of seconds"),
    ("MEDRAG_OPENAI_CONNECT_TIMEOUT", "openai_connect_timeout", float, "a number of seconds"),
    ("MEDRAG_RAY_GPUS", "ray_gpus", float, "a number of GPUs per worker"),
)


def _comma_list(value: Any) -> tuple[str, ...] | None:
    """A comma-separated string (or a TOML list) as a tuple; None when unset."""
    if value is None:
        return None
    items = value if isinstance(value, list) else str(value).split(",")
    return tuple(str(item) for item in items)


def load_settings(secrets_path: Path | None = None, **overrides: Any) -> Settings:
    """Settings from the environment and ``.streamlit/secrets.toml``, then ``overrides``.

    Environment: MEDRAG_DATA_DIR, MEDRAG_IMAGE_ENCODER, MEDRAG_TEXT_ENCODER, MEDRAG_REASONER,
    MEDRAG_SUMMARISER, MEDRAG_K, MEDRAG_DEMO_CASES, MEDRAG_WEB, SERPAPI_API_KEY, TAVILY_API_KEY,
    MEDRAG_SERPAPI_BASE_URL, MEDRAG_TAVILY_BASE_URL, MEDRAG_OPENAI_BASE_URL, MEDRAG_OPENAI_MODEL, OPENAI_API_KEY,
    MEDRAG_DEVICE, MEDRAG_OPENCLIP_MODEL, MEDRAG_READERS, HF_HUB_CACHE (HUGGINGFACE_HUB_CACHE, HF_HOME),
    MEDRAG_XRV_CACHE, MEDRAG_DATABASE_URL, MEDRAG_OPENAI_TIMEOUT, MEDRAG_OPENAI_CONNECT_TIMEOUT,
    MEDRAG_OPENAI_MAX_CONCURRENT, MEDRAG_EDUCATOR_PASSWORD_HASH, MEDRAG_EDUCATOR_EMAILS, MEDRAG_RAY_GPUS.
    """
    secrets = _read_secrets(secrets_path or REPO_ROOT / ".streamlit" / "secrets.toml")
    env = os.environ
    values: dict[str, Any] = {
        "image_encoder": env.get("MEDRAG_IMAGE_ENCODER"),
        "readers": tuple(env["MEDRAG_READERS"].split(",")) if "MEDRAG_READERS" in env else None,
        "text_encoder": env.get("MEDRAG_TEXT_ENCODER"),
        "reasoner": env.get("MEDRAG_REASONER"),
        "summariser": env.get("MEDRAG_SUMMARISER"),
        "web_provider": env.get("MEDRAG_WEB"),
        "serpapi_api_key": env.get("SERPAPI_API_KEY") or secrets.get("SERPAPI_API_KEY"),
        "tavily_api_key": env.get("TAVILY_API_KEY") or secrets.get("TAVILY_API_KEY"),
        "openai_base_url": env.get("MEDRAG_OPENAI_BASE_URL") or secrets.get("MEDRAG_OPENAI_BASE_URL"),
        "openai_model": env.get("MEDRAG_OPENAI_MODEL"),
        "openai_api_key": env.get("OPENAI_API_KEY") or secrets.get("OPENAI_API_KEY"),
        "serpapi_base_url": env.get("MEDRAG_SERPAPI_BASE_URL"),
        "tavily_base_url": env.get("MEDRAG_TAVILY_BASE_URL"),
        "database_url": env.get("MEDRAG_DATABASE_URL") or secrets.get("MEDRAG_DATABASE_URL"),
        "educator_password_hash": env.get("MEDRAG_EDUCATOR_PASSWORD_HASH")
        or secrets.get("MEDRAG_EDUCATOR_PASSWORD_HASH"),
        "educator_emails": _comma_list(env.get("MEDRAG_EDUCATOR_EMAILS") or secrets.get("MEDRAG_EDUCATOR_EMAILS")),
        "device": default_device(),
        "openclip_model": default_openclip_model(),
        "hf_cache_dir": default_hf_cache_dir(),
        "xrv_cache_dir": default_xrv_cache_dir(),
    }
    for variable, key, kind, what in _NUMERIC_VARIABLES:
        if env.get(variable):
            try:
                values[key] = kind(env[variable])
            except ValueError as exc:
                raise ConfigError(f"{variable} must be {what}, got {env[variable]!r}.") from exc
    # An override left unset (None: a CLI option not given) keeps the environment's value.
    values.update({key: value for key, value in overrides.items() if value is not None})
    return Settings().with_overrides(**values)
