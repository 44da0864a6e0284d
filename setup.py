from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = {}
exec((here / "neuroalign" / "_version.py").read_text(), version)

TIMM = ["timm>=0.9"]
HF = ["transformers>=4.40", "safetensors>=0.4"]
OPEN_CLIP = ["open-clip-torch>=2.24"]
FOREGROUND = ["rembg[cpu]>=2.0.50"]
DISTRIBUTED = ["distributed>=2024.1"]
VIDEO = ["av>=12"]  # PyAV: decoding video clips (neuroalign.data.clips)
# the documentation site (mkdocs.yml; `mkdocs build --strict`), built by tests/docs
DOCS = ["mkdocs>=1.6,<2", "mkdocs-material>=9.5,<10", "mkdocstrings[python]>=0.26"]

setup(
    name="neuroalign",
    version=version["__version__"],
    description="Brain-alignment studies of self-supervised (foveal masked-image-modeling) vision models",
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    license_files=["LICENSE"],
    python_requires=">=3.10",
    classifiers=[
        "License :: OSI Approved :: BSD License",
        "Programming Language :: Python :: 3",
        "Intended Audience :: Science/Research",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
    packages=find_packages(include=["neuroalign", "neuroalign.*"]),
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "torch>=2.1,<3",
        "torchvision>=0.16",
        "rsatoolbox>=0.2",
        "himalaya>=0.4",  # the encoding models' ridge solvers (primal and kernel, numpy or torch)
        "scikit-learn>=1.8",  # LogisticRegressionCV(use_legacy_attributes=...) is new in 1.8
        "tomli>=1.1; python_version < '3.11'",  # recipes are TOML; tomllib from 3.11 on
        "xarray>=2024.10",  # DataTree lives in xarray from 2024.10 on
        "netCDF4>=1.6",
        "h5netcdf>=1.3",  # writes the activation files (HDF5 direct chunk writes via h5py)
        "h5py>=3.8",
        "isal>=1.6",  # ISA-L's deflate: ~6x zlib's speed, same format
        "dask>=2024.1",
        "pillow>=10",
        "matplotlib>=3.7",
        "pandas>=2",
        "tqdm>=4.60",
    ],
    extras_require={
        # foreground maps (loss regions foreground_*, saliency fixations): rembg on onnxruntime
        "foreground": FOREGROUND,
        # the model sources of `load_model` specs beyond torchvision (timm:, hf:, open_clip:)
        "timm": TIMM,
        "hf": HF,
        "open_clip": OPEN_CLIP,
        "models": [*TIMM, *HF, *OPEN_CLIP],
        "video": VIDEO,
        # analyses on a dask.distributed cluster (LocalCluster here; dask-jobqueue for Slurm/PBS)
        "distributed": DISTRIBUTED,
        "docs": DOCS,
        # the test suite covers foreground maps and every model source, so the README's
        # `.[test]` installs them too
        "test": ["pytest>=7", *FOREGROUND, *TIMM, *HF, *OPEN_CLIP, *VIDEO, *DISTRIBUTED, *DOCS],
        "dev": ["pytest>=7", *FOREGROUND, *TIMM, *HF, *OPEN_CLIP, *VIDEO, *DISTRIBUTED, *DOCS, "ruff==0.17.6", "mypy==2.4.1", "types-tqdm"],
    },
    entry_points={"console_scripts": ["neuroalign=neuroalign.cli:main"]},
)
