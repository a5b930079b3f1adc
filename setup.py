"""Ships ``conf/`` (the Hydra configs, at the top of the repository where users look for them)
inside the wheel as ``video_sparse/conf``, so that a non-editable install finds its configs.
Everything else is in pyproject.toml."""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithConfigs(build_py):
    def run(self):
        super().run()
        if not self.editable_mode:  # an editable install reads conf/ in the checkout
            shutil.copytree(Path(__file__).parent / "conf", Path(self.build_lib) / "video_sparse" / "conf",
                            dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildWithConfigs})
