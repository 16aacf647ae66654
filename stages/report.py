"""report: one table of every variant, as Markdown and CSV, with the figures."""

import logging

import hydra

from fmnist.config import load_config
from fmnist.figures import read_evals
from fmnist.report import figure_links, summary_table, write_summary

log = logging.getLogger(__name__)


@hydra.main(config_path=".", config_name="entry", version_base=None)
def main(raw) -> None:
    config = load_config(raw)
    paths = config.paths

    evals = read_evals(paths.metrics, list(config.variants))
    table = summary_table(config.variants, evals, config.report.reference_accuracy)
    figures = figure_links(paths.plots, paths.reports)

    markdown, table_csv = write_summary(table, figures, paths.reports)
    log.info("wrote %s and %s (%d variants)", markdown, table_csv, len(table))


if __name__ == "__main__":
    main()
