"""The recruitment half of the client: recruiters, one-off deploys, jobs, providers
and costs (``/api/v1`` routes of ``server/api/recruit.py``)."""

from __future__ import annotations

from typing import Any

from scitq_bench.client.transport import Transport


class RecruitClientMixin(Transport):
    """Recruitment methods for ``Client`` (which provides ``_json`` and ``request``)."""

    def recruiter_create(self, batch: str, flavor: str, **fields: Any) -> dict[str, Any]:
        """fields: rank, provider, region, concurrency, prefetch, tasks_per_worker,
        minimum_tasks, maximum_workers, workflow and workflow_maximum_workers (recruiters
        of one workflow keep at most that many workers alive together)."""
        return self._json("POST", "/recruiters", json={"batch": batch, "flavor": flavor,
                                                       **fields})

    def recruiter_list(self, batch: str | None = None) -> list[dict[str, Any]]:
        return self._json("GET", "/recruiters", params={"batch": batch})

    def recruiter_update(self, recruiter_id: int, **fields: Any) -> dict[str, Any]:
        return self._json("PATCH", f"/recruiters/{int(recruiter_id)}", json=fields)

    def recruiter_delete(self, recruiter_id: int) -> dict[str, Any]:
        return self._json("DELETE", f"/recruiters/{int(recruiter_id)}")

    def worker_deploy(self, flavor: str, **fields: Any) -> list[dict[str, Any]]:
        """Hire machines now; fields: provider, region, batch, number, concurrency,
        prefetch, name (one machine), permanent. Returns the deploy jobs."""
        return self._json("POST", "/workers/deploy", json={"flavor": flavor, **fields})["jobs"]

    def worker_undeploy(self, worker_id: int) -> dict[str, Any]:
        """Give the worker's machine back: returns the destroy job, or the worker's deploy
        job, cancelled, when the machine was still being deployed."""
        return self._json("POST", f"/workers/{int(worker_id)}/undeploy")

    def job_list(self, status: str | None = None, worker: int | None = None,
                 limit: int | None = None) -> list[dict[str, Any]]:
        return self._json("GET", "/jobs", params={"status": status, "worker": worker,
                                                  "limit": limit})

    def job_get(self, job_id: int) -> dict[str, Any]:
        return self._json("GET", f"/jobs/{int(job_id)}")

    def job_log(self, job_id: int) -> str:
        return self.request("GET", f"/jobs/{int(job_id)}/log").text

    def job_retry(self, job_id: int) -> dict[str, Any]:
        return self._json("POST", f"/jobs/{int(job_id)}/retry")

    def job_cancel(self, job_id: int) -> dict[str, Any]:
        """Stop a pending or running job; its machine is given back."""
        return self._json("POST", f"/jobs/{int(job_id)}/cancel")

    def job_delete(self, job_id: int) -> dict[str, Any]:
        return self._json("DELETE", f"/jobs/{int(job_id)}")

    def provider_list(self) -> list[dict[str, Any]]:
        return self._json("GET", "/providers")

    def provider_check(self, name: str) -> dict[str, Any]:
        return self._json("POST", f"/providers/{name}/check")

    def provider_reconcile(self) -> list[str]:
        """Delete the instances tagged as ours that no live worker knows; their names."""
        return self._json("POST", "/providers/reconcile")["orphans"]

    def cost_list(self) -> list[dict[str, Any]]:
        return self._json("GET", "/costs")
