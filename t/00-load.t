use strict;
use warnings;
use lib 't/lib';
use Test::More;

use_ok('RT::Extension::HealthEndpoint');
use HEBuild qw(omitted);
my @backends = RT::Extension::HealthEndpoint::backends();
ok(scalar(grep { $_ eq 'Oracle(DBI)' } @backends), 'the DBI path is always there');
diag("RT::Extension::HealthEndpoint $RT::Extension::HealthEndpoint::VERSION,"
     . " Perl $], backends built: @backends"
     . (omitted() ? '; left out on purpose: ' . join(' ', omitted()) : ''));
for my $b (omitted()) {
    ok(!grep({ $_ eq $b } @backends), "$b: left out (HE_WITHOUT_\U$b\E=1), not built");
}

# CI builds every backend not left out on purpose: a missing library there
# is a broken install.
if (($ENV{CI} // '') eq 'true') {
    for my $b (grep { !omitted($_) } qw(Pg mysql SQLite Redis)) {
        ok(scalar(grep { $_ eq $b } @backends), "CI: backend $b is built");
    }
}
done_testing;
