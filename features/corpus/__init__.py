"""The corpus: layout readers that turn folders of videos into the videos table (`readers`), and the
groups and grouped folds that keep a fake and its original on one side of every split (`folds`)."""
