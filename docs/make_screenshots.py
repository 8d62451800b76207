"""Copy the dialogs' screenshots from the real QGIS desktop into docs/.

They are taken in QGIS itself on a 1366x768 screen (Xvfb) by the desktop test:

    .venv/bin/python -m pytest test/desktop/test_dialog_desktop.py
    .venv/bin/python docs/make_screenshots.py

dialog.png: the "Improve cloud mask" dialog after a run on the sample;
model_manager.png: the model manager after installing onnxruntime from its button.
"""

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHOTS = {"dialog.png": "dialog/dialog_window.png", "model_manager.png": "runtime/manager_window.png"}


def main() -> None:
    for name, source in SHOTS.items():
        path = ROOT / "out" / "desktop" / source
        if not path.exists():
            raise SystemExit(f"{path} is missing: run test/desktop/test_dialog_desktop.py first")
        shutil.copyfile(path, ROOT / "docs" / name)
        print("wrote", ROOT / "docs" / name)


if __name__ == "__main__":
    main()
