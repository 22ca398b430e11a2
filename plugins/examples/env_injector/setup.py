from setuptools import setup

setup(
    name="admission-host-env-injector",
    version="0.1.0",
    description="Example third-party admission-host plugin: inject environment variables into pods",
    packages=["admission_host_env_injector"],
    install_requires=["admission-host>=0.1"],  # installed first, from its wheel: docs/writing-a-plugin.md
    entry_points={"admission_host": ["env_injector = admission_host_env_injector"]},
)
