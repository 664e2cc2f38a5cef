# A Perl thread clones every CV, the wrapper included: each interpreter
# must get its own state (nothing freed twice, nothing shared).
use strict;
use warnings;
use Config;
use Test::More;

BEGIN {
    plan skip_all => 'this perl has no ithreads' unless $Config{useithreads};
}
use threads;
use RT::Extension::HealthEndpoint;

my @log;
my $app = RT::Extension::HealthEndpoint->wrap(sub { [ 299, [], ['inner'] ] },
    ping_path => '/p', allow_from => ['127.0.0.1'], cache_seconds => 0,
    db => { type => 'Informix' }, logger => sub { push @log, $_[1] });
@log = ();
my %env = (REQUEST_METHOD => 'GET', REMOTE_ADDR => '127.0.0.1');

my @in_thread = threads->create({ context => 'list' }, sub {
    my @r = map { $app->({ %env, PATH_INFO => $_ })->[0] } qw(/p /healthz/status /x);
    return (@r, scalar @log);
})->join;
is_deeply(\@in_thread, [ 200, 503, 299, 1 ],
          'the clone answers with its own copy of config, app and logger');
threads->create(sub { 1 })->join for 1 .. 3;     # clones freed again
is($app->({ %env, PATH_INFO => '/p' })->[0], 200, 'the original still works');
is($app->({ %env, PATH_INFO => '/x' })->[0], 299, 'and still passes through');
is(scalar @log, 0, "the clone's log went to the clone's copy");
done_testing;
