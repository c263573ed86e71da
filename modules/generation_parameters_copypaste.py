from modules.infotext_utils import *  # noqa: F401,F403  (A1111 renamed this module to infotext_utils in v1.8)
