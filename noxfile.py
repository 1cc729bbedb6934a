"""Sessions: `nox -s tests-jax tests-tensorflow tests-torch lint`,
`tests-keras-oldest`, `tests-keras-nightly`, `demo-<backend>`, `bench-<backend>`,
`docs`, `build`, `gpu-check` (on an NVIDIA GPU only)."""

import shutil
import sys
import tarfile
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "tests-jax", "tests-tensorflow", "tests-torch"]

# CPU builds: plain `torch` from the registry is a multi-GB CUDA build, and
# `tensorflow` carries GPU kernels that CI never uses.
BACKENDS = {
    "jax": ["jax[cpu]==0.10.2"],
    # TensorBoard: the test that the learning rate reaches its logs.
    "tensorflow": ["tensorflow-cpu==2.21.0", "tensorboard==2.21.0"],
    "torch": ["torch==2.13.0"],
}
# CUDA builds for `gpu-check`, on Linux x86-64, where PyPI's torch wheel is the
# CUDA one (here a local CPU wheel stands in for it).
GPU_BACKENDS = {
    "jax": ["jax[cuda12]==0.10.2"],
    "tensorflow": ["tensorflow[and-cuda]==2.21.0", "tensorboard==2.21.0"],
    "torch": ["torch==2.13.0"],
}
GPU_RESULTS = Path("gpu-results")

# The Keras range that pyproject.toml allows, tested at both ends on JAX: the
# oldest Keras with a JAX of its time (JAX 0.10 fails inside Keras 3.8), and
# keras-nightly with the JAX above. The tests are those of the wrapper, the
# plan, saving, `fit` in both modes and the Keras internals keras_gc uses.
OLDEST_KERAS = ["keras==3.5.0", "jax[cpu]<0.5"]
NIGHTLY_KERAS = ["keras-nightly", *BACKENDS["jax"]]
KERAS_VERSION_TESTS = [
    "tests/test_compat.py",
    "tests/test_optimizer.py",
    "tests/test_plan.py",
    "tests/test_saving.py",
    "tests/test_fit.py",
]


# The suite on every core (two workers on CI's two), each test to the next
# free worker, except that the tests of a module-scoped fixture (several
# launch processes) stay together (tests/conftest.py says which).
PARALLEL = ["-n", "auto", "--maxprocesses=4", "--dist=loadscope"]


def _compile_cache(session: nox.Session, backend: str) -> dict[str, str]:
    """The environment of a compilation cache for the session's processes.

    The suite compiles the same small programs many times (one model in many
    tests, in each worker): JAX's persistent cache and torch Inductor's compile
    each once per session. The cache is emptied first, so that a run takes as
    long as on a fresh machine.
    """
    cache = Path(session.virtualenv.location) / "compile-cache"
    shutil.rmtree(cache, ignore_errors=True)
    if backend == "jax":
        return {
            "JAX_COMPILATION_CACHE_DIR": str(cache),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
        }
    if backend == "torch":
        return {"TORCHINDUCTOR_CACHE_DIR": str(cache)}
    return {}


def _install(session: nox.Session, backend: str, extra: str) -> None:
    session.install(*BACKENDS[backend])
    session.install("-e", f".[{extra}]")


for _backend in BACKENDS:

    @nox.session(name=f"tests-{_backend}", python="3.11")
    def tests(session: nox.Session, backend: str = _backend) -> None:
        """Runs the test suite on one Keras backend."""
        # optax: the AGC tests check agreement with `optax.adaptive_grad_clip`.
        _install(session, backend, "test,bench-jax" if backend == "jax" else "test")
        env = {"KERAS_BACKEND": backend, **_compile_cache(session, backend)}
        session.run("pytest", *PARALLEL, *session.posargs, env=env)

    @nox.session(name=f"demo-{_backend}", python="3.11")
    def demo(session: nox.Session, backend: str = _backend) -> None:
        """Runs the horse-or-human comparison on one Keras backend."""
        _install(session, backend, "examples")
        session.run(
            "python",
            "-m",
            "examples.horse_or_human",
            *session.posargs,
            env={"KERAS_BACKEND": backend},
        )

    @nox.session(name=f"bench-{_backend}", python="3.11")
    def bench(session: nox.Session, backend: str = _backend) -> None:
        """Runs the benchmarks package (GC's cost, and its peers) on one backend."""
        _install(session, backend, f"bench-{backend}")
        session.run(
            "python",
            "-m",
            "benchmarks",
            *(session.posargs or ["--output", f"bench-results/{backend}"]),
            env={"KERAS_BACKEND": backend},
        )

    @nox.session(name=f"gpu-check-{_backend}", python="3.11")
    def gpu_check_backend(session: nox.Session, backend: str = _backend) -> None:
        """On an NVIDIA GPU: one backend's CUDA build, its tests, the quick bench."""
        session.run("python", "-m", "benchmarks.gpu_check")  # before installing
        session.install(*GPU_BACKENDS[backend])
        session.install("-e", f".[test,bench-{backend}]")
        env = {"KERAS_BACKEND": backend}
        results = GPU_RESULTS / backend
        results.mkdir(parents=True, exist_ok=True)
        device = session.run(
            "python", "-m", "benchmarks.gpu_check", "--backend", env=env, silent=True
        )
        (results / "device.txt").write_text(str(device))
        session.log(f"device: {device}")
        session.run(
            "pytest", "-q", f"--junitxml={results}/tests.xml", *session.posargs, env=env
        )
        session.run(
            "python",
            "-m",
            "benchmarks",
            "--quick",
            "--optimizers=adam",
            "--seconds=5",
            "--no-memory",
            f"--output={results}",
            env=env,
        )


@nox.session(name="gpu-check", venv_backend="none")
def gpu_check(session: nox.Session) -> None:
    """Checks for an NVIDIA GPU, failing at once without one, then runs
    `gpu-check-<backend>` for each backend (results in gpu-results/)."""
    session.run("python", "-m", "benchmarks.gpu_check")
    for backend in BACKENDS:
        session.notify(f"gpu-check-{backend}")


@nox.session(name="tests-keras-oldest", python="3.11")
def tests_keras_oldest(session: nox.Session) -> None:
    """Runs the Keras-version tests on the oldest Keras supported, on JAX."""
    # One resolve, so that the package's own `keras>=` keeps the old Keras.
    session.install(*OLDEST_KERAS, "-e", ".[test]")
    _run_keras_version_tests(session)


@nox.session(name="tests-keras-nightly", python="3.11")
def tests_keras_nightly(session: nox.Session) -> None:
    """Runs the Keras-version tests on keras-nightly, on JAX."""
    session.install(*BACKENDS["jax"], "-e", ".[test]")
    # keras-nightly installs the same `keras` package under another name, so
    # the release that `.[test]` pulled in goes first.
    session.run("pip", "uninstall", "--yes", "keras")
    session.install(*NIGHTLY_KERAS)
    _run_keras_version_tests(session)


def _run_keras_version_tests(session: nox.Session) -> None:
    env = {"KERAS_BACKEND": "jax"}
    session.run(
        "python", "-c", "import keras; print('keras', keras.__version__)", env=env
    )
    session.run("pytest", *PARALLEL, *(session.posargs or KERAS_VERSION_TESTS), env=env)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """Runs ruff and mypy; needs no backend."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy", "keras_gc")


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """Builds the site, strictly; redraws its figure from a real fit into the
    built site (the committed drawing stays as it is); then checks the built
    HTML for what a reader would see wrong (tests/test_docs_site.py)."""
    session.install(*BACKENDS["jax"])
    session.install("-e", ".[docs]")
    site = Path("build/site")
    env = {"KERAS_BACKEND": "jax", "KERAS_GC_SITE": str(site)}
    session.run("mkdocs", "build", "--strict", "--site-dir", str(site), env=env)
    figure = site / "figures" / "kernel_means.png"
    session.run("python", "docs/figures/kernel_means.py", str(figure), env=env)
    session.run(
        "pytest", "tests/test_docs_site.py", "-q", "-p", "no:cacheprovider", env=env
    )


@nox.session(python="3.11")
def build(session: nox.Session) -> None:
    """Builds the sdist and wheel, checks them, and smoke-tests the wheel on each
    backend in a fresh virtual environment, away from the repository."""
    session.install("build", "twine")
    dist = Path(session.create_tmp()) / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", str(dist))
    session.run("twine", "check", "--strict", *map(str, dist.iterdir()))
    _check_sdist(next(dist.glob("*.tar.gz")))
    (wheel,) = dist.glob("*.whl")
    smoke = Path("tests/wheel_smoke.py").resolve()
    for backend, pins in BACKENDS.items():
        env = (Path(session.create_tmp()) / f"wheel-{backend}").resolve()
        shutil.rmtree(env, ignore_errors=True)
        session.run(sys.executable, "-m", "venv", str(env), external=True)
        python = str(env / "bin" / "python")
        session.run(
            python, "-m", "pip", "install", "-q", *pins, str(wheel), external=True
        )
        with session.chdir(env):
            session.run(
                python, str(smoke), env={"KERAS_BACKEND": backend}, external=True
            )


def _check_sdist(sdist: Path) -> None:
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    missing = {
        "LICENSE",
        "CHANGELOG.md",
        "tests/test_optimizer.py",
        "keras_gc/py.typed",
    }
    missing -= names
    if missing:
        raise RuntimeError(f"{sdist.name} lacks {sorted(missing)}")
