"""Sessions: `nox -s tests-jax tests-tensorflow tests-torch lint`, `demo-<backend>`,
`bench-<backend>`."""

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


def _install(session: nox.Session, backend: str, extra: str) -> None:
    session.install(*BACKENDS[backend])
    session.install("-e", f".[{extra}]")


for _backend in BACKENDS:

    @nox.session(name=f"tests-{_backend}", python="3.11")
    def tests(session: nox.Session, backend: str = _backend) -> None:
        """Runs the test suite on one Keras backend."""
        _install(session, backend, "test")
        session.run("pytest", *session.posargs, env={"KERAS_BACKEND": backend})

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


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """Runs ruff and mypy; needs no backend."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy", "keras_gc")
