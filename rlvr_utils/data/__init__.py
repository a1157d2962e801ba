"""Problems: the one record every source becomes (problems), MATH loaders and stratified sampling (sources),
procedurally generated task families with a difficulty knob (tasks), and a task's guessing floor (guessing)."""
from .. import lazy_exports

_PUBLIC = {"MathProblem": "problems", "DataError": "problems", "load_math": "sources", "prepare_data": "sources",
           "stratified_sample": "sources", "generate": "tasks", "load_task": "tasks"}
__all__ = list(_PUBLIC)
__getattr__ = lazy_exports(__name__, _PUBLIC)
