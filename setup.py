from setuptools import find_packages, setup

setup(
    name="so_luigi",
    version="0.1.0",
    description="Replicate a relational database (StackOverflow-shaped) into PostgreSQL with Luigi: exact, resumable, memory-capped",
    packages=find_packages(include=["so_luigi", "so_luigi.*"]),
    package_data={"so_luigi.dialects.postgres": ["sql/*.sql"], "so_luigi.dialects.mssql": ["sql/*.sql"]},
    python_requires=">=3.9",
    install_requires=[
        "luigi>=3.0",             # so_luigi/luigi_internals.py; tests/test_luigi_internals.py checks each release
        "psycopg2-binary>=2.9",
        "tenacity>=8",            # retries of transient errors (a dependency of Luigi's too)
        "sqlglot>=30,<31",        # reads T-SQL defaults, CHECKs and filters (dialects/mssql/tsql.py)
        "pymssql>=2.2",
        "smart_open>=9",          # bulk files local and remote, gzip level by compression_kwargs
        # Stack Exchange dumps as .7z archives
        "py7zr>=0.20",
        # the embedded PostgreSQL of `so-luigi demo` (a pip-installable server)
        "pgserver>=0.1.4",
    ],
    extras_require={
        # bulk files on S3 ([bulk] dir = s3://bucket/prefix)
        "s3": ["smart_open[s3]>=9"],
        # a SQL Server source read as Arrow batches (dialects/mssql/fast.py; pgpq makes them binary
        # COPY, encode_arrow.BinaryBatchEncoder); Debian needs libltdl7
        "fast-mssql": ["mssql-python>=1.16", "pyarrow>=14", "pgpq>=0.12"],
        # moto's S3 server stands in for S3 in tests/test_s3.py; pyarrow for the Arrow encoder's tests
        "test": ["pytest>=7", "pytest-timeout>=2", "hypothesis>=6", "smart_open[s3]>=9",
                 "moto[server]>=5", "pyarrow>=14", "pgpq>=0.12"],
    },
    entry_points={"console_scripts": ["so-luigi=so_luigi.cli:main"]},
)
