from .dino import AnyWidthDINO  # noqa: F401
