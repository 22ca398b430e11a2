"""admission-host: a pluggable Kubernetes mutating admission webhook host."""

from setuptools import find_packages, setup

setup(
    name="admission-host",
    version="0.1.0",
    description="A pluggable Kubernetes mutating admission webhook host, with the ECI-Profile plugin",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=find_packages(include=["framework", "framework.*", "plugins", "plugins.*"],
                           exclude=["plugins.examples.*.tests*"]),
    include_package_data=True,
    install_requires=[
        # CI runs the integration tests at both ends of these three ranges (.ci/constraints-*.txt),
        # so each stops before the next major, which may drop what is deprecated: raise it once tested.
        "pluggy>=1.3,<2",
        "falcon>=4.0,<5",  # 4.0: HTTPContentTooLarge
        # The TLS channel subclasses waitress.channel.HTTPChannel. 3.0: WSGITask.set_close_on_finish,
        # which guard.py calls while draining; 3.0.1: the fixes of CVE-2024-49768 and CVE-2024-49769.
        "waitress>=3.0.1,<4",
        "kubernetes>=26.1",
        "jsonpatch>=1.32",
        "orjson>=3.13",  # 3.13 encodes the snapshots of every admission ~40 % faster than 3.8
        "prometheus_client>=0.20",
        "PyYAML>=6.0",
        "cryptography>=41",
    ],
    extras_require={
        "test": [
            "pytest>=7.4",
            "hypothesis>=6.80",
            "pytest-benchmark>=4.0",
            "requests>=2.28",
        ],
        "bench": [
            "matplotlib>=3.5",  # bench/out/scaling.png
        ],
    },
    entry_points={
        "console_scripts": ["admission-host = framework.cli:main",
                            # kubectl finds plugins by name on PATH: `kubectl eci ...`
                            "kubectl-eci = plugins.eci_profile.kubectl:main"],
        # The testing kit's fixtures (plugin_harness) in every pytest run where the package is installed.
        "pytest11": ["admission_host_testing = framework.pytest_plugin"],
        "admission_host": [
            "eci_profile = plugins.eci_profile.plugin",
            "pod_deletion_cost = plugins.examples.pod_deletion_cost",
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: System :: Clustering",
    ],
)
