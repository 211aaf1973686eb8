"""Package layout: one import root, ``skingenbench``, with the design card's folders kept at the top.

``services/`` and ``flows/`` stay at the repository's top (the layers a reader sees first) and are
installed as ``skingenbench.services`` and ``skingenbench.flows``; nothing is installed as a
top-level ``services`` or ``flows`` package, which would collide with other distributions. Everything
else about the distribution is declared in pyproject.toml.
"""

from setuptools import find_packages, setup

PACKAGE_ROOTS = {
    "skingenbench": "skingenbench",
    "skingenbench.services": "services",
    "skingenbench.flows": "flows",
}


def packages() -> list[str]:
    names = []
    for package, folder in PACKAGE_ROOTS.items():
        names.append(package)
        names += [f"{package}.{sub}" for sub in find_packages(folder)]
    return names


setup(packages=packages(), package_dir=PACKAGE_ROOTS)
