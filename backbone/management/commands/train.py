"""``manage.py train [APP ...] [--set KEY=VALUE ...] [--inline] [--no-activate]``.

Trains what the named apps serve (``search``, ``recommend``, ``chatbot``, ``ads``; all apps with
data when none is named) from what is in the database, activates it, and returns once the API
serves the new models. It creates the same training job as the admin's Retrain and
``POST /api/v1/training-jobs`` and waits for a worker on the ``training`` queue to run it, with a
progress bar; ``--inline`` runs the job in this process instead (no worker needed).

Exit status: 0 when the new models serve, 1 when the job failed or was cancelled (its error and
the end of its log are printed), 2 when there is nothing to train.
"""

from __future__ import annotations

import sys
import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from backbone import jobs, lifecycle, registry, services
from backbone.management.commands.evaluate import parse_extra
from backbone.models import ModelVersion, TrainingJob

POLL_SECONDS = 1.0


class Command(BaseCommand):
    help = "Train every model the named apps serve (all apps with data by default), activate it, and wait."

    def add_arguments(self, parser):
        parser.add_argument("apps", nargs="*", metavar="APP", help=f"any of {', '.join(sorted(registry.APP_TRAINERS))}")
        parser.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE")
        parser.add_argument("--inline", action="store_true", help="run the job in this process (no worker needed)")
        parser.add_argument("--no-activate", action="store_true", help="train, but keep serving the current models")
        parser.add_argument(
            "--unless-trained",
            action="store_true",
            help="do nothing when a training job has succeeded or is under way (platform/up.sh on a restart)",
        )

    def handle(self, *args, apps, extra, inline, no_activate, unless_trained, **options):
        done_or_running = [TrainingJob.Status.SUCCEEDED, TrainingJob.Status.QUEUED, TrainingJob.Status.RUNNING]
        if unless_trained and TrainingJob.objects.filter(status__in=done_or_running).exists():
            self.stderr.write("a training job has succeeded or is under way: nothing to do")
            return
        parameters = {**parse_extra(extra), "activate": not no_activate}
        unknown = sorted(set(apps) - set(registry.APP_TRAINERS))
        if unknown:
            raise CommandError(f"unknown apps {unknown}; known: {sorted(registry.APP_TRAINERS)}")
        try:
            plan = jobs.plan_training({"apps": apps})
        except services.TrainingError as exc:
            self.stderr.write(f"{exc}. Import data first: manage.py import_dataset NAME --data-dir DIR")
            sys.exit(2)
        for app, reason in plan.skipped.items():
            self.stderr.write(f"skipping {app}: {reason}")
        ahead = TrainingJob.objects.filter(status__in=[TrainingJob.Status.QUEUED, TrainingJob.Status.RUNNING])
        job = services.start_training_job(apps=[t.app for t in plan.apps], parameters=parameters, enqueue=not inline)
        self.stderr.write(f"training job #{job.pk}: apps {[t.app for t in plan.apps]}, backbone tasks {plan.tasks}")
        for other in ahead.exclude(pk=job.pk):
            self.stderr.write(f"job #{other.pk} is {other.status}: this one waits until it has finished")
        if inline:
            jobs.run_training_job(job_id=job.pk)
        job = self.wait(job)
        if job.status != TrainingJob.Status.SUCCEEDED:
            tail = "\n".join(job.log.splitlines()[-15:])
            raise CommandError(f"training job #{job.pk} {job.status}: {job.error or 'no error recorded'}\n{tail}")
        self.stdout.write(self.serving_summary(job))

    def wait(self, job: TrainingJob) -> TrainingJob:
        """Show the job's progress until it has finished; Ctrl-C stops waiting, not the job."""
        bar = tqdm(
            total=100,
            file=sys.stderr,
            mininterval=1 if sys.stderr.isatty() else 30,  # a log file gets a line every 30 s, not every poll
            bar_format="{l_bar}{bar}| {n:.0f}% [{elapsed}] {postfix}",
        )
        try:
            while True:
                job.refresh_from_db()
                last = job.log.rstrip().rsplit("\n", 1)[-1][9:] if job.log else job.status
                bar.set_postfix_str(last[:80], refresh=False)
                bar.update(round(job.progress * 100, 1) - bar.n)
                if job.is_finished:
                    return job
                time.sleep(POLL_SECONDS)
        except KeyboardInterrupt:
            raise CommandError(f"stopped waiting; job #{job.pk} goes on (cancel it in the admin)") from None
        finally:
            bar.close()

    @staticmethod
    def serving_summary(job: TrainingJob) -> str:
        """Say what serves now, read back from the database (what the API loads within seconds)."""
        active = lifecycle.active(ModelVersion)
        names = [job.metrics.get(key, {}).get("name") for key in job.metrics if isinstance(job.metrics[key], dict)]
        return f"job #{job.pk} succeeded; serving backbone {active.name if active else '?'}" + (
            f" and {', '.join(n for n in names if n)}" if any(names) else ""
        )
