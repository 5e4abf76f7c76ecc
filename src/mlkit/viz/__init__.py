"""Drawing boxes, plots, and the ipywidgets viewers used by the notebooks."""
