"""The example queries of docs/questions.md ("Questions you can ask"), offered in the SQL box.

A test checks they equal that page's `sql` blocks and titles, and run on a catalog.
"""

from __future__ import annotations

EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "Neurons shared by every class circuit that contains the star primitive",
        """\
select layer, channel, count(distinct concept) as classes
from circuit_neurons_v
where concept like '%star%' and concept <> 'star'
group by layer, position, channel
having count(distinct concept) = (select count(*) from concept where name like '%star%' and name <> 'star')
order by position, channel
""",
    ),
    (
        "The interventions with the largest accuracy drop per fraction of edges cut",
        """\
select c.concept as pruned, e.image_set, e.clean_value - e.value as accuracy_drop,
       i.edge_fraction, (e.clean_value - e.value) / i.edge_fraction as drop_per_edge_fraction
from evaluation e
join intervention i on i.id = e.intervention_id
join (select distinct circuit_id, concept from circuit_neurons_v) c on c.circuit_id = i.circuit_id
where e.metric = 'accuracy'
order by drop_per_edge_fraction desc
limit 10
""",
    ),
    (
        "Layer-by-layer overlap of two circuits",
        """\
select layer, position,
       count(*) filter (where concept = 'star') as in_star,
       count(*) filter (where concept = 'checker_star') as in_checker_star,
       count(*) - count(distinct channel) as shared
from circuit_neurons_v
where concept in ('star', 'checker_star')
group by layer, position
order by position
""",
    ),
    (
        "The strongest attribution edges of the star run",
        """\
select src_layer, src_channel, dst_layer, dst_channel, score
from edges_v
where run_id = (select min(run_id) from circuit_neurons_v where concept = 'star')
order by score desc
limit 10
""",
    ),
    (
        "Neurons that the most concept circuits reuse",
        """\
select layer, channel, count(distinct concept) as concepts,
       string_agg(distinct concept, ', ') as which
from circuit_neurons_v
group by layer, position, channel
order by concepts desc, position, channel
limit 10
""",
    ),
    (
        "Which primitive circuit hurts a class most, beside its random baseline",
        """\
select c.concept as pruned, e.clean_value as clean, e.value as after_pruning,
       e.baseline_value as after_random
from evaluation e
join intervention i on i.id = e.intervention_id
join (select distinct circuit_id, concept from circuit_neurons_v) c on c.circuit_id = i.circuit_id
where e.metric = 'accuracy' and e.image_set like 'catfish:stripes_star%'
order by e.value
""",
    ),
    (
        "Every run with its provenance",
        """\
select r.id, m.name as model, c.name as concept, r.n_images, r.device,
       round(r.seconds, 2) as seconds, r.library_versions ->> 'torch' as torch,
       left(r.image_set_sha256, 12) as images
from run r join model m on m.id = r.model_id join concept c on c.id = r.concept_id
where r.status = 'complete'
order by r.id
""",
    ),
)
"""(title, SQL) pairs in README order."""
