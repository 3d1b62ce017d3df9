"""One `Task` per family binds what differs; train/predict/submit stay task-neutral."""

from pipelines.tasks.base import Evaluation, Task, TestSet, TrainingData
from pipelines.tasks.classification import ClassificationTask
from pipelines.tasks.detection import DetectionTask
from pipelines.tasks.generation import GenerationTask
from pipelines.tasks.retrieval import RetrievalTask
from pipelines.tasks.segmentation import SegmentationTask
from pipelines.tasks.seq2seq import Seq2SeqTask
from pipelines.tasks.text import TextTask

TASKS = {
    task.name: task
    for task in (
        ClassificationTask,
        SegmentationTask,
        DetectionTask,
        RetrievalTask,
        TextTask,
        Seq2SeqTask,
        GenerationTask,
    )
}


def get_task(cfg):
    """The `Task` instance for `cfg.competition.task`."""
    return TASKS[cfg.competition.task](cfg)


__all__ = ["TASKS", "Evaluation", "Task", "TestSet", "TrainingData", "get_task"]
